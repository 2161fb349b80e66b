package api_test

import (
	"flag"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/api"
)

var update = flag.Bool("update", false, "rewrite api/openapi.yaml from the code")

// TestOpenAPI fails when the committed api/openapi.yaml (OpenAPI 3.0, what
// oapi-codegen reads) differs from what the code registers.
func TestOpenAPI(t *testing.T) {
	got, err := api.OpenAPIYAML()
	require.NoError(t, err)
	if *update {
		require.NoError(t, os.WriteFile("openapi.yaml", got, 0o644))
	}
	want, err := os.ReadFile("openapi.yaml")
	require.NoError(t, err, "api/openapi.yaml is missing; create it with: go test ./api -run TestOpenAPI -update")
	require.Equal(t, string(want), string(got),
		"api/openapi.yaml is stale; regenerate it with: go test ./api -run TestOpenAPI -update")
}
