package pod

import (
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
)

// Every change of a record's state goes through setState, which checks it
// against the diagrams of Sandbox and Container (types.go); a record is
// created in its first state (Creating, or NotReady/Unknown for a record
// recovery could not read) and never changes state any other way. Staying
// in a state is always allowed (a second StopPod, an exit seen twice).

// sandboxTransitions are the arrows of the Sandbox diagram.
var sandboxTransitions = map[SandboxState][]SandboxState{
	SandboxCreating: {SandboxReady, SandboxNotReady}, // all steps done; an undo that failed, kept for retries
	SandboxReady:    {SandboxNotReady},               // StopPod, or the pause process died
	SandboxNotReady: nil,                             // only RemovePod ends it
}

// containerTransitions are the arrows of the Container diagram.
var containerTransitions = map[ContainerState][]ContainerState{
	ContainerCreating: {ContainerCreated, ContainerExited}, // runc create done; it died before that was recorded
	ContainerCreated:  {ContainerRunning, ContainerExited}, // StartContainer; a failed start or an early exit
	ContainerRunning:  {ContainerExited},
	ContainerExited:   nil,
	ContainerUnknown:  nil, // an unreadable record: kubelet removes it
}

// setState moves the sandbox to state to, or says why it cannot.
func (s *Sandbox) setState(to SandboxState) error {
	if s.State == to {
		return nil
	}
	if !slices.Contains(sandboxTransitions[s.State], to) {
		return fmt.Errorf("pod sandbox %s cannot go from %s to %s: %w", s.ID, s.State, to, errdefs.ErrFailedPrecondition)
	}
	s.State = to
	return nil
}

// setState moves the container to state to, or says why it cannot.
func (c *Container) setState(to ContainerState) error {
	if c.State == to {
		return nil
	}
	if !slices.Contains(containerTransitions[c.State], to) {
		return fmt.Errorf("container %s cannot go from %s to %s: %w", c.ID, c.State, to, errdefs.ErrFailedPrecondition)
	}
	c.State = to
	return nil
}
