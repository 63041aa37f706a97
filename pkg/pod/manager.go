package pod

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"

	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/cri-shim/cri-shim/pkg/apparmor"
	"github.com/cri-shim/cri-shim/pkg/image"
	"github.com/cri-shim/cri-shim/pkg/keylock"
	"github.com/cri-shim/cri-shim/pkg/monitor"
	"github.com/cri-shim/cri-shim/pkg/pause"
	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// Images is what pods need from the image store (pkg/image.Store).
type Images interface {
	Get(ref string) (*image.Image, error)
	Pull(ctx context.Context, ref string, auth *image.Auth) (*image.Image, error)
	PrepareRootfs(ctx context.Context, imageID, key string) (string, error)
	PrepareIDMappedRootfs(ctx context.Context, imageID, key string, m image.IDMap) (string, error)
	RemoveRootfs(ctx context.Context, key string) error
	RootfsUsage(key string) (bytes, inodes uint64, err error)
	RootfsUpper(key string) (string, error)
}

// Config holds the Manager's dependencies and paths.
type Config struct {
	// Root is persistent state (records, CNI result cache, pod files).
	Root string
	// State is volatile state (netns pins, runtime root, bundles, monitor).
	State string
	// Runtime is the OCI runtime binary of the default handler (the
	// handlers "" and "runc").
	Runtime string
	// Handlers are the other RuntimeClass handlers (RunPodSandbox's
	// runtime_handler), by name; crun is added when installed and it answers
	// `crun features`.
	Handlers map[string]Handler
	// MonitorBinary is the cri-shim-monitor executable.
	MonitorBinary string
	// PauseBinary is the pause program copied into the pause rootfs.
	PauseBinary string
	// PauseImage, when set, replaces the built-in pause with an image
	// (pulled on first use; the caller pins it in the image store).
	PauseImage string
	// CNIConfDir and CNIBinDirs locate the network plugins.
	CNIConfDir string
	CNIBinDirs []string
	// AppArmor is the host's AppArmor (nil: apparmor.System()).
	AppArmor *apparmor.Host
	// CgroupDriver is runtime.CgroupfsDriver (the default) or
	// runtime.SystemdDriver.
	CgroupDriver string
	Images       Images
	// ImageFsMountpoint is what ImageFsInfo reports as the image
	// filesystem; container writable layers live on it too, and kubelet
	// matches the two by this identifier.
	ImageFsMountpoint string

	// CDISpecDirs are the directories of CDI specs (device plugins and DRA
	// drivers write them); none: a container asking for a CDI device is
	// refused.
	CDISpecDirs []string

	// CRIU is the criu binary CheckpointContainer uses (default "criu"
	// from PATH).
	CRIU string

	// StatsPeriod is how often every container's and pod's stats are
	// sampled for the list calls (stats_cache.go); 0: DefaultStatsPeriod,
	// negative: no sampler, the list calls read everything on the call.
	StatsPeriod time.Duration

	// Fault, when set, is called at named steps of the orchestration; an
	// error fails the operation there (tests prove rollback with it).
	Fault func(step string) error
}

// Handler is an OCI runtime a RuntimeClass names: a binary with runc's
// command line (runc, crun) and its state directory.
type Handler struct {
	Binary string
	// Root is the runtime's --root; empty: <State>/runtimes/<name>.
	Root string
}

// DefaultHandler is the handler the empty runtime_handler means.
const DefaultHandler = "runc"

// Manager runs sandboxes and containers.
type Manager struct {
	cfg      Config
	runc     *runtime.Runc // the default handler's
	runtimes map[string]*runtime.Runc
	features map[*runtime.Runc]*runtime.Features // probed at start; nil: the probe failed
	// usernsErr says why no pod can have a user namespace here (nil: the
	// kernel idmaps mounts on the image filesystem; see userNSSupport).
	usernsErr  error
	apparmor   apparmorHost
	cdi        *cdi.Cache // nil: no CDI spec directories
	monitor    *monitor.Client
	network    *network
	sandboxes  *store[Sandbox]
	containers *store[Container]
	locks      keylock.Map // one per sandbox or container ID
	names      nameIndex
	exits      *exitWaiter
	events     *eventBus
	pauseRoot  string
	rates      cpuRates
	stats      statsCache
	samples    sampleCache
	ownOOMAdj  int
}

// New prepares the directories, starts (or reconnects to) the monitor and
// recovers every record. It never fails because of one bad record.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Runtime == "" {
		cfg.Runtime = "runc"
	}
	if cfg.StatsPeriod == 0 {
		cfg.StatsPeriod = DefaultStatsPeriod
	}
	switch cfg.CgroupDriver {
	case "":
		cfg.CgroupDriver = runtime.CgroupfsDriver
	case runtime.CgroupfsDriver, runtime.SystemdDriver:
	default:
		return nil, fmt.Errorf("unknown cgroup driver %q (want %s or %s)", cfg.CgroupDriver, runtime.CgroupfsDriver, runtime.SystemdDriver)
	}
	m := &Manager{
		cfg: cfg,
		runc: &runtime.Runc{Binary: cfg.Runtime, Root: filepath.Join(cfg.State, "runc"),
			SystemdCgroup: cfg.CgroupDriver == runtime.SystemdDriver},
		monitor: &monitor.Client{Dir: filepath.Join(cfg.State, "monitor"), Binary: cfg.MonitorBinary,
			Started: monitorStarted(cfg.CgroupDriver)},
		exits:  newExitWaiter(),
		events: newEventBus(),
	}
	m.runtimes = map[string]*runtime.Runc{"": m.runc, DefaultHandler: m.runc}
	for name, h := range cfg.Handlers {
		if name == "" || name == DefaultHandler {
			return nil, fmt.Errorf("runtime handler %q is the default (runtime = ...), not a handler of its own", name)
		}
		m.runtimes[name] = m.handlerRuntime(name, h)
	}
	m.features = map[*runtime.Runc]*runtime.Features{}
	// crun is offered when it is installed and answers `crun features` (the
	// OCI runtime features document, crun >= 1.9): Debian 12's crun 1.8.1
	// has no such command, and refuses cgroup v1 hybrid hosts anyway.
	if _, ok := m.runtimes["crun"]; !ok {
		if path, err := exec.LookPath("crun"); err == nil {
			r := m.handlerRuntime("crun", Handler{Binary: path})
			if f, err := r.Features(ctx); err == nil {
				m.runtimes["crun"], m.features[r] = r, f
			}
		}
	}
	for name, r := range m.runtimes {
		if _, probed := m.features[r]; probed {
			continue // "" and "runc" are one runtime
		}
		f, err := r.Features(ctx)
		if err != nil {
			// crun before 1.9 has no `features`: report nothing optional.
			klog.FromContext(ctx).Info("The runtime does not report its features (none assumed)", "handler", name, "runtime", r.Binary, "err", err)
		}
		m.features[r] = f
	}
	m.apparmor = cfg.AppArmor
	if cfg.AppArmor == nil {
		m.apparmor = apparmor.System()
	}
	m.names.init()
	if len(cfg.CDISpecDirs) > 0 {
		// It watches the directories and rereads what changes, as DRA
		// drivers write specs while pods are being made.
		m.cdi, _ = cdi.NewCache(cdi.WithSpecDirs(cfg.CDISpecDirs...), cdi.WithAutoRefresh(true))
	}
	var err error
	if m.sandboxes, err = newStore[Sandbox](filepath.Join(cfg.Root, "sandboxes"), "sandbox.json"); err != nil {
		return nil, err
	}
	if m.containers, err = newStore[Container](filepath.Join(cfg.Root, "containers"), "container.json"); err != nil {
		return nil, err
	}
	dirs := []string{m.netnsDir(), m.usernsDir(), m.bundlesDir()}
	for _, r := range m.runtimes {
		dirs = append(dirs, r.Root)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if m.ownOOMAdj, err = runtime.OwnOOMScoreAdj(); err != nil {
		m.ownOOMAdj = 0
	}
	if m.pauseRoot, err = pause.PrepareRootfs(filepath.Join(cfg.State, "pause"), cfg.PauseBinary); err != nil {
		return nil, err
	}
	if m.usernsErr = m.probeUserNS(ctx); m.usernsErr != nil {
		klog.FromContext(ctx).Info("Pods cannot have user namespaces", "reason", m.usernsErr)
	}
	m.network = newNetwork(cfg.CNIConfDir, cfg.CNIBinDirs, filepath.Join(cfg.Root, "cni-cache"))
	if err := m.monitor.Ensure(ctx); err != nil {
		return nil, err
	}
	if err := m.monitor.CheckMountNamespace(); err != nil {
		return nil, err
	}
	steps := m.recover(ctx)
	go m.finishRecovery(ctx, steps)
	go m.watchExits(context.WithoutCancel(ctx))
	go m.sampleStats(context.WithoutCancel(ctx))
	return m, nil
}

func (m *Manager) netnsDir() string             { return filepath.Join(m.cfg.State, "netns") }
func (m *Manager) bundlesDir() string           { return filepath.Join(m.cfg.State, "bundles") }
func (m *Manager) bundleDir(id string) string   { return filepath.Join(m.bundlesDir(), id) }
func (m *Manager) podFilesDir(id string) string { return filepath.Join(m.cfg.Root, "sandboxes", id) }

func (m *Manager) fault(step string) error {
	if m.cfg.Fault == nil {
		return nil
	}
	return m.cfg.Fault(step)
}

// newID returns a random 64-hex-digit ID, the form kubelet and crictl expect.
func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// nameIndex maps CRI names (pod: name_namespace_uid_attempt; container:
// sandbox_name_attempt) to IDs, so a name is never used twice.
type nameIndex struct {
	mu    sync.Mutex
	names map[string]string
}

func (n *nameIndex) init() { n.names = map[string]string{} }

// reserve takes name for id; if another ID holds it, that ID is returned.
func (n *nameIndex) reserve(name, id string) (holder string, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h, taken := n.names[name]; taken && h != id {
		return h, false
	}
	n.names[name] = id
	return id, true
}

func (n *nameIndex) release(name, id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.names[name] == id {
		delete(n.names, name)
	}
}

// undo runs cleanups in reverse order with a fresh bounded context (the
// caller's may be cancelled: that is often why we are undoing), all of them,
// joining failures.
type undo struct {
	steps []undoStep
}

type undoStep struct {
	what string
	fn   func(ctx context.Context) error
}

func (u *undo) add(what string, fn func(ctx context.Context) error) {
	u.steps = append(u.steps, undoStep{what, fn})
}

func (u *undo) run(logger klog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	for i := len(u.steps) - 1; i >= 0; i-- {
		if err := u.steps[i].fn(ctx); err != nil {
			logger.Error(err, "Rollback step failed", "step", u.steps[i].what)
			errs = append(errs, fmt.Errorf("undo %s: %w", u.steps[i].what, err))
		}
	}
	u.steps = nil
	return errors.Join(errs...)
}

// handlerRuntime is the runtime client of a handler; its root defaults to
// <State>/runtimes/<name>.
func (m *Manager) handlerRuntime(name string, h Handler) *runtime.Runc {
	if h.Binary == "" {
		h.Binary = name
	}
	if h.Root == "" {
		h.Root = filepath.Join(m.cfg.State, "runtimes", name)
	}
	return &runtime.Runc{Binary: h.Binary, Root: h.Root, SystemdCgroup: m.runc.SystemdCgroup}
}

// runtimeFor is the runtime of a handler. A handler no longer configured
// (its records outlived a config change) keeps its conventional root, so
// its containers are still found, stopped and removed, not taken for gone.
func (m *Manager) runtimeFor(handler string) *runtime.Runc {
	if r, ok := m.runtimes[handler]; ok {
		return r
	}
	return m.handlerRuntime(handler, Handler{})
}

// runtimeOf is the runtime a container was created with.
func (m *Manager) runtimeOf(c *Container) *runtime.Runc { return m.runtimeFor(c.Handler) }

// HasHandler reports whether RunPodSandbox accepts the handler.
func (m *Manager) HasHandler(name string) bool {
	_, ok := m.runtimes[name]
	return ok
}

// HandlerRuntimes lists the handlers ("" first) with their runtime binary.
func (m *Manager) HandlerRuntimes() []HandlerRuntime {
	names := make([]string, 0, len(m.runtimes))
	for n := range m.runtimes {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]HandlerRuntime, 0, len(names))
	for _, n := range names {
		r := m.runtimes[n]
		out = append(out, HandlerRuntime{Name: n, Runtime: r, Features: m.features[r], UserNamespaces: m.userNSSupport(r) == nil})
	}
	return out
}

// HandlerRuntime is a handler and the runtime it runs.
type HandlerRuntime struct {
	Name     string
	Runtime  *runtime.Runc
	Features *runtime.Features // nil: unknown
	// UserNamespaces: its pods can have a user namespace (the runtime and
	// the kernel can, see userNSSupport).
	UserNamespaces bool
}

func notFound(kind, id string) error {
	if id == "" {
		return fmt.Errorf("%s ID is empty: %w", kind, errdefs.ErrNotFound)
	}
	return fmt.Errorf("%s %q: %w", kind, id, errdefs.ErrNotFound)
}

// monitorStarted is what happens to a new monitor process: under the systemd
// driver it leaves cri-shim's service cgroup for a scope of its own in
// system.slice, so stopping or restarting the service never touches it or
// the containers' stdio it holds. Failing that it stays where it is, which
// the unit's KillMode=process tolerates.
func monitorStarted(driver string) func(context.Context, int) {
	if driver != runtime.SystemdDriver {
		return nil
	}
	return func(ctx context.Context, pid int) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		unit := fmt.Sprintf("cri-shim-monitor-%d.scope", pid)
		if err := runtime.MoveToScope(ctx, pid, unit, runtime.DefaultSystemdParent, "cri-shim container monitor"); err != nil {
			klog.FromContext(ctx).Error(err, "Could not give the container monitor a systemd scope of its own; it stays in cri-shim's cgroup", "pid", pid)
			return
		}
		klog.FromContext(ctx).Info("Container monitor runs in its own systemd scope", "pid", pid, "unit", unit)
	}
}
