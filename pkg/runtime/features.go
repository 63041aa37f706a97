package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Features is the part of `<runtime> features` (the OCI runtime features
// document; runc >= 1.1, crun >= 1.8) the CRI's handler features depend on.
type Features struct {
	MountOptions []string `json:"mountOptions"`
	Linux        *struct {
		Namespaces      []string `json:"namespaces"`
		MountExtensions *struct {
			IDMap *struct {
				Enabled *bool `json:"enabled"`
			} `json:"idmap"`
		} `json:"mountExtensions"`
	} `json:"linux"`
}

// Features asks the runtime what it supports.
func (r *Runc) Features(ctx context.Context) (*Features, error) {
	out, err := r.run(ctx, "", nil, "features")
	if err != nil {
		return nil, err
	}
	var f Features
	if err := json.Unmarshal(out, &f); err != nil {
		return nil, fmt.Errorf("%s features: %w", r.binary(), err)
	}
	return &f, nil
}

// RecursiveReadOnly reports the "rro" mount option (recursive read-only
// mounts through mount_setattr).
func (f *Features) RecursiveReadOnly() bool {
	return f != nil && slices.Contains(f.MountOptions, "rro")
}

// HasNamespace reports whether the runtime can make or join namespaces of
// type t.
func (f *Features) HasNamespace(t specs.LinuxNamespaceType) bool {
	return f != nil && f.Linux != nil && slices.Contains(f.Linux.Namespaces, string(t))
}

// IDMappedMounts reports idmapped mounts (what user-namespaced pods need).
func (f *Features) IDMappedMounts() bool {
	if f == nil || f.Linux == nil || f.Linux.MountExtensions == nil || f.Linux.MountExtensions.IDMap == nil ||
		f.Linux.MountExtensions.IDMap.Enabled == nil {
		return false
	}
	return *f.Linux.MountExtensions.IDMap.Enabled
}
