package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// routesKey is the queue key of the route sync. It cannot clash with a
// node name (a DNS subdomain). Routes depend on every node at once (a
// deleted node's route can only be found by what no node wants any more),
// so all node events share this one key and the queue collapses a burst of
// them (an informer's initial list, a resync) into one reconcile.
const routesKey = "\x00routes"

// ControllerConfig wires a Controller.
type ControllerConfig struct {
	// NodeName is the node the agent runs on.
	NodeName string
	Client   kubernetes.Interface
	// ConflistPath is where this node's CNI config goes.
	ConflistPath string
	Conflist     ConflistOptions
	// Routes installs routes to the other nodes; nil manages none.
	Routes *RouteReconciler
	// Resync is how often the conflist and the routes are checked again
	// without an API event: the kernel and the file system can change
	// under the agent (a deleted route, a removed file).
	Resync  time.Duration
	Metrics *Metrics
}

// Controller is the Node informer -> workqueue -> syncNode loop.
type Controller struct {
	cfg         ControllerConfig
	factory     informers.SharedInformerFactory
	nodes       corelisters.NodeLister
	nodesSynced cache.InformerSynced
	queue       workqueue.TypedRateLimitingInterface[string]

	informerSynced  atomic.Bool
	conflistWritten atomic.Bool
}

// NewController sets up the informer and the queue; Run starts them.
func NewController(cfg ControllerConfig) (*Controller, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("node name is empty")
	}
	if cfg.Client == nil || cfg.Metrics == nil {
		return nil, errors.New("controller needs a client and metrics")
	}
	if cfg.Resync <= 0 {
		return nil, fmt.Errorf("resync period %v must be positive", cfg.Resync)
	}
	factory := informers.NewSharedInformerFactory(cfg.Client, 0)
	nodeInformer := factory.Core().V1().Nodes()
	c := &Controller{
		cfg:         cfg,
		factory:     factory,
		nodes:       nodeInformer.Lister(),
		nodesSynced: nodeInformer.Informer().HasSynced,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "cni-bridge-agent"}),
	}
	inf := nodeInformer.Informer()
	// The agent reads only names, podCIDRs and addresses; the image list
	// and managed fields are most of a Node's size in a big cluster.
	if err := inf.SetTransform(trimNode); err != nil {
		return nil, fmt.Errorf("set node transform: %w", err)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if n, ok := obj.(*corev1.Node); ok {
				c.enqueue(n.Name)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Node)
			n, ok2 := newObj.(*corev1.Node)
			// Heartbeats and condition changes update Nodes all the time;
			// only podCIDRs and addresses matter here.
			if ok1 && ok2 && routingChanged(o, n) {
				c.enqueue(n.Name)
			}
		},
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.enqueue(key) // cluster-scoped: the key is the name
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("add node event handler: %w", err)
	}
	return c, nil
}

// trimNode drops the fields the agent never reads before the informer
// stores a Node.
func trimNode(obj any) (any, error) {
	if n, ok := obj.(*corev1.Node); ok {
		n.ManagedFields = nil
		n.Status.Images = nil
		n.Status.Conditions = nil
		n.Status.VolumesAttached = nil
		n.Status.VolumesInUse = nil
	}
	return obj, nil
}

func routingChanged(o, n *corev1.Node) bool {
	return o.Spec.PodCIDR != n.Spec.PodCIDR ||
		!slices.Equal(o.Spec.PodCIDRs, n.Spec.PodCIDRs) ||
		!slices.Equal(o.Status.Addresses, n.Status.Addresses)
}

// enqueue queues the work a change of the named node calls for.
func (c *Controller) enqueue(name string) {
	if name == c.cfg.NodeName {
		c.queue.Add(name)
	}
	// Every node, this one included (its own podCIDR is never routed
	// elsewhere), can change the routes.
	if c.cfg.Routes != nil {
		c.queue.Add(routesKey)
	}
}

// Ready returns nil once the informer has synced and this node's conflist
// is written, else why not.
func (c *Controller) Ready() error {
	if !c.informerSynced.Load() {
		return errors.New("node informer has not synced yet")
	}
	if !c.conflistWritten.Load() {
		return fmt.Errorf("no CNI config yet: waiting for node %q to have a podCIDR", c.cfg.NodeName)
	}
	return nil
}

// Run runs the informer and the worker until ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	defer c.queue.ShutDown()
	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	logger.Info("Waiting for the node informer to sync", "node", c.cfg.NodeName)
	if !cache.WaitForNamedCacheSyncWithContext(ctx, c.nodesSynced) {
		return fmt.Errorf("node informer did not sync: %w", ctx.Err())
	}
	c.informerSynced.Store(true)
	c.enqueue(c.cfg.NodeName)

	var wg sync.WaitGroup
	wg.Go(func() {
		for c.processNextItem(ctx) {
		}
	})
	wg.Go(func() {
		t := time.NewTicker(c.cfg.Resync)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.enqueue(c.cfg.NodeName)
			}
		}
	})
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

func (c *Controller) processNextItem(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.syncNode(ctx, key); err != nil {
		klog.FromContext(ctx).Error(err, "Sync failed, will retry", "key", printableKey(key), "retries", c.queue.NumRequeues(key))
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

func printableKey(key string) string {
	if key == routesKey {
		return "routes"
	}
	return key
}

// syncNode brings what key stands for to its desired state: this node's
// name stands for its conflist, routesKey for the routes to every other
// node.
func (c *Controller) syncNode(ctx context.Context, key string) error {
	switch key {
	case routesKey:
		err := c.syncRoutes(ctx)
		c.cfg.Metrics.observeSync(syncRoutes, err)
		return err
	case c.cfg.NodeName:
		err := c.syncConflist(ctx)
		c.cfg.Metrics.observeSync(syncConflist, err)
		return err
	}
	return nil
}

// syncConflist writes this node's conflist for its podCIDRs. Without a
// Node object or a podCIDR it writes nothing, and a conflist written
// before stays: removing it would fail every new pod, while a missing
// podCIDR is usually a moment in a node's registration.
func (c *Controller) syncConflist(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	node, err := c.nodes.Get(c.cfg.NodeName)
	if apierrors.IsNotFound(err) {
		logger.V(2).Info("This node has no Node object yet", "node", c.cfg.NodeName)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get node %q: %w", c.cfg.NodeName, err)
	}
	podCIDRs := PodCIDRs(node)
	if len(podCIDRs) == 0 {
		logger.V(2).Info("This node has no podCIDR yet", "node", c.cfg.NodeName)
		return nil
	}
	data, err := BuildConflist(c.cfg.Conflist, podCIDRs)
	if err != nil {
		return fmt.Errorf("build CNI config for node %q: %w", c.cfg.NodeName, err)
	}
	if err := writeConflist(ctx, c.cfg.ConflistPath, data, c.cfg.Metrics, podCIDRs); err != nil {
		return err
	}
	c.conflistWritten.Store(true)
	return nil
}

// writeConflist writes data to path unless it is there already.
func writeConflist(ctx context.Context, path string, data []byte, m *Metrics, podCIDRs []netip.Prefix) error {
	changed, err := WriteFileAtomic(path, data, 0o644)
	if err != nil {
		return fmt.Errorf("write CNI config: %w", err)
	}
	if changed {
		m.conflistWrites.Inc()
		klog.FromContext(ctx).Info("Wrote CNI config", "path", path, "podCIDRs", podCIDRs)
	}
	return nil
}

// syncRoutes reconciles the routes to every other node's pod subnets.
func (c *Controller) syncRoutes(ctx context.Context) error {
	if c.cfg.Routes == nil {
		return nil
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	res, err := c.cfg.Routes.Reconcile(ctx, DesiredRoutes(c.cfg.NodeName, nodes))
	if res != nil {
		c.cfg.Metrics.observeRoutes(*res)
	}
	if err != nil {
		return fmt.Errorf("reconcile routes: %w", err)
	}
	return nil
}
