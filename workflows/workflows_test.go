package workflows_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/goleak"

	"github.com/smq/smq/activities"
	"github.com/smq/smq/workflows"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var a *activities.Activities

type bundle struct {
	env   *testsuite.TestWorkflowEnvironment
	memos []map[string]any
}

func setup(t *testing.T) *bundle {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(workflows.Scheduler)
	env.RegisterWorkflow(workflows.Janitor)
	env.RegisterWorkflow(workflows.Flush)
	env.RegisterActivity(a.Schedule)
	env.RegisterActivity(a.Sweep)
	env.RegisterActivity(a.Flush)
	b := &bundle{env: env}
	env.OnUpsertMemo(mock.Anything).Run(func(args mock.Arguments) {
		b.memos = append(b.memos, args.Get(0).(map[string]any))
	}).Return().Maybe()
	t.Cleanup(func() { env.AssertExpectations(t) })
	return b
}

func run(start, end time.Time) activities.RunStats {
	return activities.RunStats{StartedAt: start, EndedAt: end, Passes: 10}
}

// continued returns the input a workflow continued as new with.
func continued(t *testing.T, env *testsuite.TestWorkflowEnvironment, in any) {
	t.Helper()
	require.True(t, env.IsWorkflowCompleted())
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, err, &can)
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, in))
}

func queryStats(t *testing.T, env *testsuite.TestWorkflowEnvironment) workflows.Stats {
	t.Helper()
	v, err := env.QueryWorkflow(workflows.StatsQuery)
	require.NoError(t, err)
	var st workflows.Stats
	require.NoError(t, v.Get(&st))
	return st
}

func TestSchedulerContinuesAsNewWithStats(t *testing.T) {
	b := setup(t)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b.env.OnActivity(a.Schedule, mock.Anything, activities.ScheduleInput{Region: "eu", RunFor: time.Minute}).
		Return(activities.ScheduleResult{RunStats: run(t0, t0.Add(time.Minute)), Promoted: 7, MaxLateness: 3 * time.Millisecond}, nil).
		Times(3)

	b.env.ExecuteWorkflow(workflows.Scheduler, workflows.SchedulerInput{
		Region: "eu",
		Loop:   workflows.Loop{RunFor: time.Minute, Iterations: 3},
	})

	var next workflows.SchedulerInput
	continued(t, b.env, &next)
	require.Equal(t, "eu", next.Region)
	require.Equal(t, 3, next.Loop.Iterations)
	require.Equal(t, int64(3), next.Stats.Runs)
	require.Equal(t, int64(21), next.Stats.Promoted)
	require.Equal(t, 1, next.Stats.Generation)
	require.False(t, next.Stats.Since.IsZero())

	st := queryStats(t, b.env)
	require.Equal(t, int64(21), st.Promoted)
	require.Equal(t, int64(3), st.Runs)
	require.Equal(t, 3*time.Millisecond, st.MaxLateness)
	require.Equal(t, time.Minute, st.LastRun)

	require.Len(t, b.memos, 3)
	require.Equal(t, "eu", b.memos[2]["region"])
	require.Equal(t, int64(21), b.memos[2]["promoted"])
	require.Equal(t, int64(3), b.memos[2]["runs"])
}

func TestSchedulerCarriesStatsAcrossContinueAsNew(t *testing.T) {
	b := setup(t)
	since := time.Date(2029, 6, 1, 0, 0, 0, 0, time.UTC)
	b.env.OnActivity(a.Schedule, mock.Anything, mock.Anything).
		Return(activities.ScheduleResult{Promoted: 1}, nil).Once()

	b.env.ExecuteWorkflow(workflows.Scheduler, workflows.SchedulerInput{
		Region: "eu",
		Loop:   workflows.Loop{Iterations: 1},
		Stats:  workflows.Stats{Region: "eu", Since: since, Generation: 4, Runs: 100, Promoted: 1000},
	})

	var next workflows.SchedulerInput
	continued(t, b.env, &next)
	require.Equal(t, since, next.Stats.Since)
	require.Equal(t, 5, next.Stats.Generation)
	require.Equal(t, int64(101), next.Stats.Runs)
	require.Equal(t, int64(1001), next.Stats.Promoted)
}

func TestSchedulerContinuesAsNewWhenSuggested(t *testing.T) {
	b := setup(t)
	b.env.SetContinueAsNewSuggested(true)
	b.env.OnActivity(a.Schedule, mock.Anything, mock.Anything).
		Return(activities.ScheduleResult{Promoted: 1}, nil).Once()

	b.env.ExecuteWorkflow(workflows.Scheduler, workflows.SchedulerInput{Region: "eu"})

	var next workflows.SchedulerInput
	continued(t, b.env, &next)
	require.Equal(t, int64(1), next.Stats.Runs)
}

func TestSchedulerRetriesFailedRuns(t *testing.T) {
	b := setup(t)
	attempts := 0
	b.env.OnActivity(a.Schedule, mock.Anything, mock.Anything).
		Return(func(_ context.Context, _ activities.ScheduleInput) (activities.ScheduleResult, error) {
			attempts++
			if attempts <= 3 {
				return activities.ScheduleResult{}, errors.New("database failing for 1m0s")
			}
			return activities.ScheduleResult{Promoted: 2}, nil
		})

	b.env.ExecuteWorkflow(workflows.Scheduler, workflows.SchedulerInput{Region: "eu", Loop: workflows.Loop{Iterations: 1}})

	var next workflows.SchedulerInput
	continued(t, b.env, &next)
	require.Equal(t, 4, attempts)
	require.Equal(t, int64(2), next.Stats.Promoted)
	require.Equal(t, int64(1), next.Stats.Runs)
}

func TestSchedulerRecordsRunErrorsAndGoesOn(t *testing.T) {
	b := setup(t)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b.env.OnActivity(a.Schedule, mock.Anything, mock.Anything).
		Return(activities.ScheduleResult{}, temporal.NewNonRetryableApplicationError("no store", activities.ErrTypeNotConfigured, nil)).Once()
	b.env.OnActivity(a.Schedule, mock.Anything, mock.Anything).
		Return(activities.ScheduleResult{
			RunStats: activities.RunStats{Errors: 2, LastError: "promote: connection refused", LastErrorAt: t0},
			Promoted: 5,
		}, nil).Once()

	b.env.ExecuteWorkflow(workflows.Scheduler, workflows.SchedulerInput{Region: "eu", Loop: workflows.Loop{Iterations: 2}})

	var next workflows.SchedulerInput
	continued(t, b.env, &next)
	require.Equal(t, int64(3), next.Stats.Errors)
	require.Equal(t, "promote: connection refused", next.Stats.LastError)
	require.Equal(t, int64(1), next.Stats.Runs)
	require.Equal(t, int64(5), next.Stats.Promoted)
	require.Len(t, b.memos, 2)
	require.Contains(t, b.memos[0]["last_error"], "no store")
}

func TestSchedulerRefusesEmptyRegion(t *testing.T) {
	b := setup(t)
	b.env.ExecuteWorkflow(workflows.Scheduler, workflows.SchedulerInput{})
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, b.env.GetWorkflowError(), &appErr)
	require.Equal(t, workflows.ErrTypeInvalidInput, appErr.Type())
}

func TestSchedulerStopsWhenCanceled(t *testing.T) {
	b := setup(t)
	b.env.OnActivity(a.Schedule, mock.Anything, mock.Anything).
		Return(activities.ScheduleResult{}, nil).Maybe()
	b.env.RegisterDelayedCallback(b.env.CancelWorkflow, 0)
	b.env.ExecuteWorkflow(workflows.Scheduler, workflows.SchedulerInput{Region: "eu"})
	require.True(t, temporal.IsCanceledError(b.env.GetWorkflowError()))
}

func TestJanitorAddsUpSweeps(t *testing.T) {
	b := setup(t)
	b.env.OnActivity(a.Sweep, mock.Anything, activities.SweepInput{Region: "us", RunFor: workflows.DefaultRunFor}).
		Return(activities.SweepResult{Retried: 3, DeadLettered: 1, StaleNodes: 1}, nil).Times(2)

	b.env.ExecuteWorkflow(workflows.Janitor, workflows.JanitorInput{Region: "us", Loop: workflows.Loop{Iterations: 2}})

	var next workflows.JanitorInput
	continued(t, b.env, &next)
	require.Equal(t, "us", next.Region)
	require.Equal(t, int64(6), next.Stats.Retried)
	require.Equal(t, int64(2), next.Stats.DeadLettered)
	require.Equal(t, int64(2), next.Stats.StaleNodes)
	st := queryStats(t, b.env)
	require.Equal(t, int64(6), st.Retried)
	require.Equal(t, int64(2), b.memos[1]["dead_lettered"])
}

func TestFlushRunsOnTheNodeQueue(t *testing.T) {
	b := setup(t)
	var queues []string
	b.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		queues = append(queues, info.TaskQueue)
	})
	b.env.OnActivity(a.Flush, mock.Anything, activities.FlushInput{Region: "eu", Node: "n1", RunFor: workflows.DefaultRunFor}).
		Return(activities.FlushResult{Flushed: 100}, nil).Times(2)

	b.env.ExecuteWorkflow(workflows.Flush, workflows.FlushInput{Region: "eu", Node: "n1", Loop: workflows.Loop{Iterations: 2}})

	var next workflows.FlushInput
	continued(t, b.env, &next)
	require.Equal(t, "n1", next.Node)
	require.Equal(t, int64(200), next.Stats.Flushed)
	require.Equal(t, []string{"smq/eu/n1", "smq/eu/n1"}, queues)
	require.Equal(t, "n1", b.memos[1]["node"])
	require.Equal(t, int64(200), b.memos[1]["flushed"])
}

func TestNames(t *testing.T) {
	require.Equal(t, "smq/eu", workflows.RegionTaskQueue("eu"))
	require.Equal(t, "smq/eu/n1", workflows.NodeTaskQueue("eu", "n1"))
	require.Equal(t, "smq-scheduler/eu", workflows.SchedulerID("eu"))
	require.Equal(t, "smq-janitor/eu", workflows.JanitorID("eu"))
	require.Equal(t, "smq-flush/eu/n1", workflows.FlushID("eu", "n1"))
}
