package pod

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

func TestSandboxSetState(t *testing.T) {
	for _, tc := range []struct {
		from, to SandboxState
		ok       bool
	}{
		{SandboxCreating, SandboxReady, true},
		{SandboxCreating, SandboxNotReady, true},
		{SandboxReady, SandboxNotReady, true},
		{SandboxNotReady, SandboxNotReady, true}, // a second StopPod
		{SandboxNotReady, SandboxReady, false},   // a stopped pod never comes back
		{SandboxReady, SandboxCreating, false},
		{SandboxNotReady, SandboxCreating, false},
	} {
		s := &Sandbox{ID: "p", State: tc.from}
		err := s.setState(tc.to)
		if (err == nil) != tc.ok {
			t.Errorf("%s -> %s: %v, want ok=%v", tc.from, tc.to, err, tc.ok)
			continue
		}
		if err != nil && (!errors.Is(err, errdefs.ErrFailedPrecondition) || s.State != tc.from) {
			t.Errorf("%s -> %s refused: %v, state %s (want FailedPrecondition, unchanged)", tc.from, tc.to, err, s.State)
		}
		if err == nil && s.State != tc.to {
			t.Errorf("%s -> %s: state %s", tc.from, tc.to, s.State)
		}
	}
}

func TestContainerSetState(t *testing.T) {
	for _, tc := range []struct {
		from, to ContainerState
		ok       bool
	}{
		{ContainerCreating, ContainerCreated, true},
		{ContainerCreating, ContainerExited, true}, // died before "created" was recorded
		{ContainerCreated, ContainerRunning, true},
		{ContainerCreated, ContainerExited, true}, // a failed start
		{ContainerRunning, ContainerExited, true},
		{ContainerExited, ContainerExited, true}, // an exit seen twice
		{ContainerExited, ContainerRunning, false},
		{ContainerRunning, ContainerCreated, false},
		{ContainerCreating, ContainerRunning, false}, // never started before it was created
		{ContainerUnknown, ContainerRunning, false},
		{ContainerUnknown, ContainerExited, false},
	} {
		c := &Container{ID: "c", State: tc.from}
		err := c.setState(tc.to)
		if (err == nil) != tc.ok {
			t.Errorf("%s -> %s: %v, want ok=%v", tc.from, tc.to, err, tc.ok)
			continue
		}
		if err != nil && (!errors.Is(err, errdefs.ErrFailedPrecondition) || c.State != tc.from) {
			t.Errorf("%s -> %s refused: %v, state %s (want FailedPrecondition, unchanged)", tc.from, tc.to, err, c.State)
		}
	}
}
