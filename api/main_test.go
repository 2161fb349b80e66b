package api_test

import (
	"os"
	"testing"

	"github.com/smq/smq/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
