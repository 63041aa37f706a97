// Package image is cri-shim's image store: registry pulls, a content store,
// safe layer unpacking, container root filesystems on overlayfs, archive
// import and garbage collection. pkg/cri's ImageService handlers and pkg/pod
// use it; it knows nothing of CRI types.
//
// # API
//
//	New(ctx, Options) (*Store, error)
//	(*Store) Pull(ctx, ref string, *Auth) (*Image, error)
//	(*Store) Import(ctx, io.Reader) ([]*Image, error)
//	(*Store) Get(ref string) (*Image, error)      // ID, name, digest ref or ID prefix
//	(*Store) List() []*Image
//	(*Store) Remove(ctx, ref string) error        // all names; idempotent
//	(*Store) Pin(ref string) error
//	(*Store) FsUsage() (Usage, error)             // ImageFsInfo
//	(*Store) PrepareRootfs(ctx, imageID, key string) (string, error)
//	(*Store) PrepareIDMappedRootfs(ctx, imageID, key string, IDMap) (string, error) // user-namespaced containers
//	MountIDMapped(src, target string, usernsFD int) error
//	CheckIDMapped(dir string, usernsFD int) error
//	(*Store) UnmountRootfs(key string) error
//	(*Store) RemoveRootfs(ctx, key string) error
//	(*Store) RootfsUsage(key string) (bytes, inodes uint64, err error)
//	(*Store) RootfsUpper(key string) (string, error)
//	ParseRef(string) (Reference, error)           // docker normalisation
//	ParseUser(string) (uid *int64, username string)
//
// # Errors
//
// Errors wrap containerd/errdefs sentinels: a malformed reference or key is
// ErrInvalidArgument, and so is an image over a bound (a manifest over 4
// MiB, a config over 16 MiB, a layer over its compressed or uncompressed
// size or its entry count: see limits.go); an absent image ErrNotFound
// (Remove of one is nil); a registry 401 ErrUnauthenticated, 403
// ErrPermissionDenied; a corrupt or
// truncated blob or layer ErrDataLoss; removing a pinned or in-use image
// ErrFailedPrecondition; a stalled or too slow transfer ErrStalled, which
// wraps context.DeadlineExceeded. A failed pull or import leaves nothing
// partial: blobs are verified before they get their name, layers are
// unpacked aside and renamed into place, and what nothing references is
// collected. A pull unpacks each layer while its blob downloads, and
// commits neither before both the blob's digest and the layer's diff ID
// have been checked (stream.go).
//
// # On disk
//
//	<root>/content/sha256/<hex>  blobs; content/ingest/ holds writes in progress
//	<root>/images/<hex>.json     image records (versioned JSON, atomic writes)
//	<root>/layers/<n>/           unpacked layers; <n>.json maps n to the diff ID
//	<root>/rootfs/<key>/         container rootfs: upper/ work/ merged/ rootfs.json
//	<root>/trash/                trees being deleted
//
// One Store owns its root; two processes must not share one.
//
// # Integration notes
//
// Registry hosts and mirrors come from a containerd-style hosts.toml
// directory (package hosts). Image names always keep their upstream form.
//
// PrepareRootfs returns <root>/rootfs/<key>/merged, the bundle's root path.
// A layer stays on disk while any image or any prepared rootfs (mounted or
// not) uses it, so removing an image never pulls layers from under a
// container; they go with RemoveRootfs. Options.InUse lets Remove refuse an
// image that containers still use (CRI: FailedPrecondition); it is called
// with the image-record lock held, so it may call Get and List but not Remove,
// Pin, Pull or Import.
//
// Lookups (Get, List, FsUsage) never wait for a mount, an unmount, an fsync
// or a garbage collection: see Store for the locks and their order.
package image
