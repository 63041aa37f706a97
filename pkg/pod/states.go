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
	return transition("pod sandbox", s.ID, &s.State, to, sandboxTransitions)
}

// setState moves the container to state to, or says why it cannot.
func (c *Container) setState(to ContainerState) error {
	return transition("container", c.ID, &c.State, to, containerTransitions)
}

// transition sets *state to to if the diagram has that arrow (or it stays).
func transition[S ~string](kind, id string, state *S, to S, arrows map[S][]S) error {
	if *state == to {
		return nil
	}
	if !slices.Contains(arrows[*state], to) {
		return fmt.Errorf("%s %s cannot go from %s to %s: %w", kind, id, *state, to, errdefs.ErrFailedPrecondition)
	}
	*state = to
	return nil
}
