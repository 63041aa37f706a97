package pod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	securejoin "github.com/cyphar/filepath-securejoin"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Image volumes (KEP-4639, GA in Kubernetes 1.36): a Mount with an image
// instead of a host path mounts that image's filesystem read-only (but not
// noexec) at the container path, or one directory of it (image_sub_path).
// kubelet pulls the image first; the mount is a rootfs of the image store,
// sharing the image's layers, and the image cannot be removed while a
// container uses it (ImageInUse).

// imageVolumes resolves the image mounts of cfg into the records the
// container keeps; nothing is made yet. The keys derive from the container
// ID, so recovery and removal find them from the record.
func (m *Manager) imageVolumes(id string, cfg *runtimeapi.ContainerConfig) ([]ImageVolume, error) {
	var vols []ImageVolume
	for i, mnt := range cfg.GetMounts() {
		ref := mnt.GetImage().GetImage()
		if ref == "" {
			continue
		}
		dst := filepath.Clean(mnt.GetContainerPath())
		if !mnt.GetReadonly() {
			return nil, invalid("image volume %s at %s must be read-only (readonly: true)", ref, dst)
		}
		if sub := mnt.GetImageSubPath(); sub != "" && !filepath.IsLocal(sub) {
			return nil, invalid("image volume %s at %s: image_sub_path %q must be a relative path inside the image", ref, dst, sub)
		}
		img, err := m.cfg.Images.Get(ref)
		if err != nil {
			return nil, fmt.Errorf("image volume %s at %s: %w", ref, dst, err)
		}
		vols = append(vols, ImageVolume{Key: fmt.Sprintf("%s-iv%d", id, i), ContainerPath: dst, Image: ref,
			ImageID: img.ID, SubPath: mnt.GetImageSubPath()})
	}
	return vols, nil
}

// mountImageVolumes makes each volume's rootfs and returns the host path to
// bind at each container path; each rootfs made is pushed on u.
func (m *Manager) mountImageVolumes(ctx context.Context, vols []ImageVolume, u *undo) (map[string]string, error) {
	sources := map[string]string{}
	for _, v := range vols {
		root, err := m.cfg.Images.PrepareRootfs(ctx, v.ImageID, v.Key)
		if err != nil {
			return nil, fmt.Errorf("image volume %s at %s: %w", v.Image, v.ContainerPath, err)
		}
		u.add("remove image volume "+v.Key, func(ctx context.Context) error { return m.cfg.Images.RemoveRootfs(ctx, v.Key) })
		src := root
		if v.SubPath != "" {
			// Resolved inside the image: a symlink in it cannot lead out.
			if src, err = securejoin.SecureJoin(root, v.SubPath); err != nil {
				return nil, fmt.Errorf("image volume %s: image_sub_path %q: %w", v.Image, v.SubPath, err)
			}
			if _, err := os.Stat(src); err != nil {
				return nil, invalid("image volume %s at %s: image_sub_path %q is not in the image", v.Image, v.ContainerPath, v.SubPath)
			}
		}
		sources[v.ContainerPath] = src
	}
	return sources, nil
}

// removeImageVolumes removes the rootfs of every image volume of c.
func (m *Manager) removeImageVolumes(ctx context.Context, c *Container) error {
	var errs []error
	for _, v := range c.ImageVolumes {
		if err := m.cfg.Images.RemoveRootfs(ctx, v.Key); err != nil {
			errs = append(errs, fmt.Errorf("remove image volume %s of %s: %w", v.Key, c.ID, err))
		}
	}
	return errors.Join(errs...)
}
