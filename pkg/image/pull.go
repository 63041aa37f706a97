package image

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
	"k8s.io/klog/v2"

	"github.com/cri-shim/cri-shim/pkg/image/hosts"
)

const (
	userAgent = "cri-shim"
	// Parallel blob downloads and layer unpacks per pull.
	downloadJobs = 3
	unpackJobs   = 2
)

// retryBackoff is go-containerregistry's retry of temporary failures,
// shorter than its default so that a broken host is left for the next one
// quickly.
var retryBackoff = remote.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}

// Pull fetches ref (normalised with ParseRef) from its registry, or from the
// mirrors hosts.toml gives for it, unpacks its layers and records it. It
// returns the image; its ID is what CRI PullImage returns.
//
// Hosts are tried in order: a tag is resolved on the first host with the
// resolve capability that answers (a digest on a pull-capable host), then
// the content is fetched from the first pull-capable host that serves it
// all. Concurrent pulls of the same reference with the same credentials
// share one pull; blobs and layers shared between images are downloaded and
// unpacked once.
func (s *Store) Pull(ctx context.Context, ref string, auth *Auth) (*Image, error) {
	start := time.Now()
	img, err := s.pullRef(ctx, ref, auth)
	s.metrics.observePull(err, time.Since(start))
	return img, err
}

func (s *Store) pullRef(ctx context.Context, ref string, auth *Auth) (*Image, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	logger := klog.FromContext(ctx).WithValues("image", r.String())
	ctx = klog.NewContext(ctx, logger)
	img, err := s.pulls.do(ctx, r.String()+"|"+auth.fingerprint(), func(ctx context.Context) (*Image, error) {
		return s.pull(ctx, r, auth)
	})
	if err != nil {
		return nil, fmt.Errorf("pull image %q: %w", r.String(), err)
	}
	logger.V(2).Info("Pulled image", "imageID", img.ID, "duration", time.Since(start))
	return img.clone(), nil
}

// registryClient talks to one host about one repository.
type registryClient struct {
	host   hosts.Host
	repo   name.Repository
	puller *remote.Puller
	key    string // host and credentials, for sharing downloads
	wd     watchdog
}

func (s *Store) clients(r Reference, auth *Auth) ([]*registryClient, []hostError, error) {
	hs, err := hosts.Resolve(s.configDir, r.Domain)
	if err != nil {
		return nil, nil, err
	}
	var clients []*registryClient
	var errs []hostError
	for _, h := range hs {
		a, err := auth.authenticator(r.Domain, h.Host)
		if err != nil {
			return nil, nil, err
		}
		rt, err := s.transports.get(h)
		if err != nil {
			errs = append(errs, hostError{h.URL(), err})
			continue
		}
		var nopts []name.Option
		if h.Scheme == "http" {
			nopts = append(nopts, name.Insecure)
		}
		repo, err := name.NewRepository(h.Host+"/"+r.Path, nopts...)
		if err != nil {
			errs = append(errs, hostError{h.URL(), fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)})
			continue
		}
		p, err := remote.NewPuller(remote.WithTransport(rt), remote.WithAuth(a), remote.WithUserAgent(userAgent),
			remote.WithRetryBackoff(retryBackoff), remote.WithPlatform(s.platform))
		if err != nil {
			errs = append(errs, hostError{h.URL(), err})
			continue
		}
		clients = append(clients, &registryClient{host: h, repo: repo, puller: p, key: h.URL() + "|" + auth.fingerprint(), wd: s.wd})
	}
	return clients, errs, nil
}

func (s *Store) pull(ctx context.Context, r Reference, auth *Auth) (*Image, error) {
	logger := klog.FromContext(ctx)
	clients, errs, err := s.clients(r, auth)
	if err != nil {
		return nil, err
	}
	need, id := hosts.CapResolve, r.Tag
	if r.Digest != "" {
		need, id = hosts.CapPull, r.Digest
	}
	var top *remote.Descriptor
	var resolver *registryClient
	for _, c := range clients {
		if !c.host.Capabilities.Has(need) {
			continue
		}
		d, err := c.manifest(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			logger.V(2).Info("Host could not resolve image", "host", c.host.URL(), "err", err)
			errs = append(errs, hostError{c.host.URL(), err})
			continue
		}
		top, resolver = d, c
		break
	}
	if top == nil {
		return nil, joinHostErrors(errs)
	}
	topDigest := top.Digest.String()
	logger.V(2).Info("Resolved image", "digest", topDigest, "host", resolver.host.URL())

	errs = nil
	for _, c := range clients {
		if !c.host.Capabilities.Has(hosts.CapPull) {
			continue
		}
		var known *remote.Descriptor
		if c == resolver {
			known = top
		}
		img, err := s.fetchImage(ctx, c, r, topDigest, known)
		if err == nil {
			return img, nil
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		logger.V(2).Info("Host could not serve image", "host", c.host.URL(), "err", err)
		errs = append(errs, hostError{c.host.URL(), err})
	}
	return nil, joinHostErrors(errs)
}

func (c *registryClient) manifest(ctx context.Context, id string) (*remote.Descriptor, error) {
	var ref name.Reference = c.repo.Tag(id)
	if strings.HasPrefix(id, "sha256:") {
		ref = c.repo.Digest(id)
	}
	var desc *remote.Descriptor
	err := c.wd.run(ctx, "fetch manifest "+ref.String(), func(ctx context.Context) error {
		var err error
		// remote.Get reads the whole body into memory (up to 100 MiB):
		// bound the read itself, not just the result.
		desc, err = c.puller.Get(withBodyLimit(ctx, maxManifestSize), ref)
		return err
	})
	if err != nil {
		return nil, classify(err)
	}
	// The transport enforced this already; the check keeps the bound
	// visible where the manifest is used.
	if len(desc.Manifest) > maxManifestSize {
		return nil, fmt.Errorf("manifest %s is over %d bytes: %w", ref, maxManifestSize, errdefs.ErrInvalidArgument)
	}
	return desc, nil
}

// fetchImage fetches the image topDigest names (a manifest or an index)
// from one host, unpacks it and commits it. known is topDigest's descriptor
// if this host resolved it.
func (s *Store) fetchImage(ctx context.Context, c *registryClient, r Reference, topDigest string, known *remote.Descriptor) (*Image, error) {
	l := s.newLease()
	defer l.release()
	desc := known
	if desc == nil {
		var err error
		if desc, err = c.manifest(ctx, topDigest); err != nil {
			return nil, err
		}
	}
	raw, mt, manifestDigest := desc.Manifest, desc.MediaType, topDigest
	if err := s.storeBytes(l, manifestDigest, raw); err != nil {
		return nil, err
	}
	blobs := []string{manifestDigest}
	var m *v1.Manifest
	for depth := 0; ; depth++ {
		child, mm, err := parseManifestBlob(raw, mt, s.platform, s.limits)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", manifestDigest, err)
		}
		if mm != nil {
			m = mm
			break
		}
		if depth >= 2 {
			return nil, fmt.Errorf("index nesting too deep: %w", errdefs.ErrInvalidArgument)
		}
		cd, err := c.manifest(ctx, child.Digest.String())
		if err != nil {
			return nil, err
		}
		raw, mt, manifestDigest = cd.Manifest, cd.MediaType, child.Digest.String()
		if err := s.storeBytes(l, manifestDigest, raw); err != nil {
			return nil, err
		}
		blobs = append(blobs, manifestDigest)
	}
	src := &registrySource{s: s, c: c, l: l, downloads: semaphore.NewWeighted(downloadJobs)}
	rec, err := s.fetchContent(ctx, l, m, src)
	if err != nil {
		return nil, err
	}
	rec.ManifestDigest = manifestDigest
	rec.Blobs = append(rec.Blobs, blobs...)
	names := []string{r.Name() + "@" + topDigest}
	if r.Digest == "" {
		names = append(names, r.Name()+":"+r.Tag)
	}
	return s.commit(ctx, rec, names)
}

// blobSource is where fetchContent finds the blobs of an image.
type blobSource interface {
	// fetch makes sure blob d, declared as size bytes, is in the content
	// store, and leases it. It reads no more than size+1 bytes of it, to
	// detect an overlong blob.
	fetch(ctx context.Context, d string, size int64) error
}

// layerStreamer is a blobSource that can unpack a layer while its blob
// downloads.
type layerStreamer interface {
	blobSource
	// streamLayer stores job.blob, which is not in the content store, and
	// unpacks it as layer job.diffID from the same read (Store.streamLayer).
	streamLayer(ctx context.Context, job layerJob) (*layerRecord, error)
}

// fetchContent makes sure the config and layers of manifest m are stored
// (fetching them from src) and unpacked, and returns the image record
// without names. Pulls and imports share it.
func (s *Store) fetchContent(ctx context.Context, l *lease, m *v1.Manifest, src blobSource) (*imageRecord, error) {
	// Every declared size is checked before anything is fetched: the
	// config's bounds its download, then the read below.
	if err := checkManifest(m, s.limits); err != nil {
		return nil, err
	}
	cfgDigest := m.Config.Digest.String()
	if err := src.fetch(ctx, cfgDigest, m.Config.Size); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cfgRaw, err := s.content.readAll(cfgDigest, maxConfigSize)
	if err != nil {
		return nil, err
	}
	rec, err := newImageRecord(m, cfgRaw)
	if err != nil {
		return nil, err
	}
	if err := s.fetchLayers(ctx, l, rec, src); err != nil {
		return nil, err
	}
	return rec, nil
}

// fetchLayers makes sure the layers of rec are stored and unpacked. Each
// layer is unpacked as soon as its own blob is there, or while it
// downloads, not after the others: at most downloadJobs downloads and
// unpackJobs unpacks run at once.
func (s *Store) fetchLayers(ctx context.Context, l *lease, rec *imageRecord, src blobSource) error {
	unpackSlots := semaphore.NewWeighted(unpackJobs)
	g, gctx := errgroup.WithContext(ctx)
	// Enough layers in flight to keep every slot busy: one whose unpack
	// waits for a slot can meanwhile download.
	g.SetLimit(downloadJobs + unpackJobs)
	for i, lb := range rec.Layers {
		job := layerJob{blob: lb, diffID: rec.DiffIDs[i], src: src, unpackSlots: unpackSlots}
		// Leased before it is looked up, so that a collection cannot
		// take it in between.
		l.add("layer:" + job.diffID)
		g.Go(func() error { return s.fetchLayer(gctx, job) })
	}
	return g.Wait()
}

// fetchLayer makes sure one layer is unpacked and its blob stored.
func (s *Store) fetchLayer(ctx context.Context, job layerJob) error {
	if _, err := s.ensureLayer(ctx, job); err != nil {
		return err
	}
	// The image keeps its layer blobs, also one whose layer was unpacked
	// already or from another blob with the same diff ID. Usually the
	// blob is there by now.
	return job.src.fetch(ctx, job.blob.Digest, job.blob.Size)
}

// storeBytes stores a manifest or index already in memory.
func (s *Store) storeBytes(l *lease, d string, raw []byte) error {
	l.add("blob:" + d)
	if digestOf(raw) != d {
		return fmt.Errorf("manifest %s has digest %s: %w", d, digestOf(raw), errdefs.ErrDataLoss)
	}
	if s.content.has(d) {
		return nil
	}
	return s.content.writeBlob(d, int64(len(raw)), bytes.NewReader(raw))
}

// registrySource is the blobSource of a pull from one host. It streams
// layers, and downloads at most downloadJobs blobs at once.
type registrySource struct {
	s         *Store
	c         *registryClient
	l         *lease
	downloads *semaphore.Weighted
}

// fetch downloads blob d into the content store unless it is there.
// Downloads of one blob from one host with one credential are shared.
func (r *registrySource) fetch(ctx context.Context, d string, size int64) error {
	r.l.add("blob:" + d)
	if r.s.content.has(d) {
		return nil
	}
	_, err := r.s.blobs.do(ctx, r.c.key+"|"+d, func(ctx context.Context) (struct{}, error) {
		if r.s.content.has(d) {
			return struct{}{}, nil
		}
		err := r.read(ctx, d, func(body io.Reader) error { return r.s.content.writeBlob(d, size, body) })
		return struct{}{}, classify(err)
	})
	return err
}

// streamLayer downloads and unpacks a layer at once. It needs no sharing
// of its own: ensureLayer shares it between all who need the layer, from
// any host, and fetch of the blob is only asked for once the layer exists.
func (r *registrySource) streamLayer(ctx context.Context, job layerJob) (*layerRecord, error) {
	d := job.blob.Digest
	// Leased before it is committed, so that a collection cannot take it
	// before the image record refers to it.
	r.l.add("blob:" + d)
	rec, err := r.s.streamLayer(ctx, job, func(ctx context.Context, consume func(io.Reader) error) error {
		return r.read(ctx, d, consume)
	})
	return rec, classify(err)
}

// read downloads blob d, in one of the pull's download slots and under the
// watchdog, and passes the body to consume.
func (r *registrySource) read(ctx context.Context, d string, consume func(io.Reader) error) error {
	if err := r.downloads.Acquire(ctx, 1); err != nil {
		return context.Cause(ctx)
	}
	defer r.downloads.Release(1)
	err := r.c.wd.run(ctx, "fetch blob "+d, func(ctx context.Context) error {
		layer, err := r.c.puller.Layer(ctx, r.c.repo.Digest(d))
		if err != nil {
			return err
		}
		rc, err := layer.Compressed()
		if err != nil {
			return err
		}
		defer rc.Close()
		return consume(meteredReader{r: rc, c: r.s.metrics.bytes})
	})
	klog.FromContext(ctx).V(3).Info("Fetched blob", "digest", d, "host", r.c.host.URL(), "err", err)
	return err
}

type meteredReader struct {
	r io.Reader
	c prometheus.Counter
}

func (m meteredReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.c.Add(float64(n))
	return n, err
}
