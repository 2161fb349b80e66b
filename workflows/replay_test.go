package workflows_test

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/smq/smq/workflows"
)

// TestReplay replays histories recorded from real runs (see
// worker.TestWriteHistories): a change to a workflow that would break the
// workflows running in production fails here.
func TestReplay(t *testing.T) {
	for _, tc := range []struct {
		file string
		name string
		fn   any
	}{
		{"scheduler.json", workflows.SchedulerName, workflows.Scheduler},
		{"janitor.json", workflows.JanitorName, workflows.Janitor},
		{"flush.json", workflows.FlushName, workflows.Flush},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(tc.fn, workflow.RegisterOptions{Name: tc.name})
			err := r.ReplayWorkflowHistoryFromJSONFile(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)), filepath.Join("testdata", tc.file))
			require.NoError(t, err)
		})
	}
}
