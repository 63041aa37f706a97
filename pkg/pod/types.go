package pod

import (
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Sandbox states:
//
//	            RunPod                    all steps done
//	(none) ───────────────▶ Creating ───────────────────▶ Ready
//	                           │ failure, or found at start-up    │ StopPod, or the
//	                           ▼                                  ▼ pause process died
//	                      (rolled back,                       NotReady ──RemovePod──▶ (none)
//	                       record deleted)
//
// Creating is written to disk before the first side effect (the intent),
// so a crash at any step is undone by recovery; an undo that fails leaves
// the sandbox NotReady (listed, retried, removable). Every change goes
// through Sandbox.setState (states.go), which allows only these arrows.
type SandboxState string

const (
	SandboxCreating SandboxState = "Creating"
	SandboxReady    SandboxState = "Ready"
	SandboxNotReady SandboxState = "NotReady"
)

// sandboxVersion is the record format; bump it when fields change meaning.
const sandboxVersion = 1

// Sandbox is the record of one pod sandbox.
type Sandbox struct {
	Version   int                          `json:"version"`
	ID        string                       `json:"id"`
	State     SandboxState                 `json:"state"`
	Config    *runtimeapi.PodSandboxConfig `json:"config"`
	Handler   string                       `json:"runtimeHandler,omitempty"`
	CreatedAt time.Time                    `json:"createdAt"`
	NetNS     string                       `json:"netns,omitempty"` // pin path; empty for host network
	// UserNS is the pin of the pod's user namespace, which owns NetNS;
	// empty: the host's (userns.go).
	UserNS   string   `json:"userns,omitempty"`
	CNIAdded bool     `json:"cniAdded,omitempty"` // ADD was attempted: DEL must run
	IPs      []string `json:"ips,omitempty"`
	PausePid int      `json:"pausePid,omitempty"`
	// PauseStartTime is the pause process's start time (/proc/<pid>/stat):
	// pids are reused quickly (pid_max may be 32768), so the pid alone
	// never names the process.
	PauseStartTime uint64 `json:"pauseStartTime,omitempty"`
	ShmPath        string `json:"shmPath,omitempty"` // the pod's /dev/shm tmpfs on the host
	Cgroup         string `json:"cgroupParent,omitempty"`
	// CgroupDriver is the driver the pod's cgroups were made with (empty:
	// cgroupfs, records from before it was recorded): a pod keeps its
	// driver for life, even if cri-shim restarts with another.
	CgroupDriver string `json:"cgroupDriver,omitempty"`
	Unknown      string `json:"-"` // set when the record could not be read: why
}

// Container states:
//
//	         CreateContainer          StartContainer          exit
//	(none) ──────────────────▶ Created ──────────────▶ Running ─────▶ Exited ──Remove──▶ (none)
//	                              │ crash before "created" is recorded: undone at start-up
//	                              └──────────────────────────────────────────────▶ Exited (never started)
//
// Creating (written before the first side effect) becomes Created once runc
// create is done, or Exited if the process died first. Unknown marks a
// record that could not be read; kubelet removes it. Every change goes
// through Container.setState (states.go), which allows only these arrows.
type ContainerState string

const (
	ContainerCreating ContainerState = "Creating"
	ContainerCreated  ContainerState = "Created"
	ContainerRunning  ContainerState = "Running"
	ContainerExited   ContainerState = "Exited"
	ContainerUnknown  ContainerState = "Unknown"
)

const containerVersion = 1

// Container is the record of one container.
type Container struct {
	Version    int                                 `json:"version"`
	ID         string                              `json:"id"`
	SandboxID  string                              `json:"sandboxID"`
	State      ContainerState                      `json:"state"`
	Config     *runtimeapi.ContainerConfig         `json:"config"`
	ImageID    string                              `json:"imageID"`
	ImageRef   string                              `json:"imageRef"` // what the user asked for
	CreatedAt  time.Time                           `json:"createdAt"`
	StartedAt  time.Time                           `json:"startedAt,omitzero"`
	FinishedAt time.Time                           `json:"finishedAt,omitzero"`
	ExitCode   int32                               `json:"exitCode"`
	Reason     string                              `json:"reason,omitempty"`
	Message    string                              `json:"message,omitempty"`
	Pid        int                                 `json:"pid,omitempty"`
	LogPath    string                              `json:"logPath,omitempty"` // absolute
	StopSignal string                              `json:"stopSignal,omitempty"`
	Resources  *runtimeapi.LinuxContainerResources `json:"resources,omitempty"`
	// StartTime is the init process's start time (/proc/<pid>/stat), so a
	// signal never reaches a process that reused the pid.
	StartTime uint64 `json:"startTime,omitempty"`
	// User is the resolved identity of the init process.
	User *ContainerUser `json:"user,omitempty"`
	// ImageVolumes are the images mounted read-only into the container
	// (Mount.image), recorded before they are made.
	ImageVolumes []ImageVolume `json:"imageVolumes,omitempty"`
	// Handler is the RuntimeClass handler of its sandbox ("": the default).
	Handler string `json:"runtimeHandler,omitempty"`
	Unknown string `json:"-"`
}

// ImageVolume is an OCI image mounted read-only at a container path
// (KEP-4639): a rootfs of the image store over the image's shared layers.
type ImageVolume struct {
	Key           string `json:"key"` // its rootfs in the image store
	ContainerPath string `json:"containerPath"`
	Image         string `json:"image"`   // as the container asked for it
	ImageID       string `json:"imageID"` // what PullImage answered (reported as image_ref)
	SubPath       string `json:"subPath,omitempty"`
}

// ContainerUser is the identity a container's process runs as.
type ContainerUser struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
}
