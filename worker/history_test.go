package worker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/smq/smq/activities"
	"github.com/smq/smq/workflows"
)

// TestWriteHistories records, with SMQ_WRITE_HISTORY=1, one run of each
// workflow against the embedded server, with fake activities, into
// workflows/testdata: the histories the workflows' replay test checks the
// code against. Record them again only when a change to a workflow is meant
// to break replay (and gate it with workflow.GetVersion otherwise).
func TestWriteHistories(t *testing.T) {
	if os.Getenv("SMQ_WRITE_HISTORY") == "" {
		t.Skip("set SMQ_WRITE_HISTORY=1 to record workflows/testdata/*.json")
	}
	ts := startTemporal(t, "127.0.0.1:0")
	c, err := client.Dial(client.Options{HostPort: ts.GRPCAddr(), Logger: tlog.NewStructuredLogger(testLogger(t))})
	require.NoError(t, err)
	defer c.Close()

	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	stats := activities.RunStats{StartedAt: t0, EndedAt: t0.Add(time.Second), Passes: 3}
	// Each fake fails its first attempt (a retry) and its second run for
	// good (the error pause), so the histories hold both paths.
	var mu sync.Mutex
	calls := map[string]int{}
	fail := func(name string) error {
		mu.Lock()
		defer mu.Unlock()
		calls[name]++
		switch calls[name] {
		case 1:
			return errors.New("database failing for 1m0s")
		case 3:
			return temporal.NewNonRetryableApplicationError("no flusher", activities.ErrTypeNotConfigured, nil)
		}
		return nil
	}
	queue := workflows.NodeTaskQueue("eu", "n1")
	w := sdkworker.New(c, queue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(workflows.Scheduler, workflow.RegisterOptions{Name: workflows.SchedulerName})
	w.RegisterWorkflowWithOptions(workflows.Janitor, workflow.RegisterOptions{Name: workflows.JanitorName})
	w.RegisterWorkflowWithOptions(workflows.Flush, workflow.RegisterOptions{Name: workflows.FlushName})
	w.RegisterActivityWithOptions(func(ctx context.Context, in activities.ScheduleInput) (activities.ScheduleResult, error) {
		return activities.ScheduleResult{RunStats: stats, Promoted: 10, MaxLateness: 2 * time.Millisecond}, fail("Schedule")
	}, activity.RegisterOptions{Name: "Schedule"})
	w.RegisterActivityWithOptions(func(ctx context.Context, in activities.SweepInput) (activities.SweepResult, error) {
		return activities.SweepResult{RunStats: stats, Retried: 2, DeadLettered: 1}, fail("Sweep")
	}, activity.RegisterOptions{Name: "Sweep"})
	// The flush's activities run on the node's queue, here the same one.
	w.RegisterActivityWithOptions(func(ctx context.Context, in activities.FlushInput) (activities.FlushResult, error) {
		return activities.FlushResult{RunStats: stats, Flushed: 100}, fail("Flush")
	}, activity.RegisterOptions{Name: "Flush"})
	require.NoError(t, w.Start())
	defer w.Stop()

	lp := workflows.Loop{RunFor: time.Second, Iterations: 4, ErrorPause: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	record := func(name string, fn, in any) {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "history-" + name, TaskQueue: queue}, fn, in)
		require.NoError(t, err)
		// run.Get would follow the run into its continuation.
		require.Eventually(t, func() bool {
			d, err := c.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
			return err == nil && d.WorkflowExecutionInfo.Status == enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW
		}, time.Minute, 50*time.Millisecond, "%s continues as new", name)
		var events []*historypb.HistoryEvent
		it := c.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, 0)
		for it.HasNext() {
			e, err := it.Next()
			require.NoError(t, err)
			events = append(events, e)
		}
		b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&historypb.History{Events: events})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join("..", "workflows", "testdata", name+".json"), append(b, '\n'), 0o644))
		require.NoError(t, c.TerminateWorkflow(ctx, run.GetID(), "", "history recorded"))
	}
	record("scheduler", workflows.Scheduler, workflows.SchedulerInput{Region: "eu", Loop: lp})
	record("janitor", workflows.Janitor, workflows.JanitorInput{Region: "eu", Loop: lp})
	record("flush", workflows.Flush, workflows.FlushInput{Region: "eu", Node: "n1", Loop: lp})
}
