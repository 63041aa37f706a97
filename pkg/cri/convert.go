package cri

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/image"
	"github.com/cri-shim/cri-shim/pkg/pod"
)

func sandboxState(sb *pod.Sandbox) runtimeapi.PodSandboxState {
	if sb.State == pod.SandboxReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func toPodSandbox(sb *pod.Sandbox) *runtimeapi.PodSandbox {
	return &runtimeapi.PodSandbox{
		Id:             sb.ID,
		Metadata:       sb.Config.GetMetadata(),
		State:          sandboxState(sb),
		CreatedAt:      sb.CreatedAt.UnixNano(),
		Labels:         sb.Config.GetLabels(),
		Annotations:    sb.Config.GetAnnotations(),
		RuntimeHandler: sb.Handler,
	}
}

func toPodSandboxStatus(sb *pod.Sandbox) *runtimeapi.PodSandboxStatus {
	st := &runtimeapi.PodSandboxStatus{
		Id:             sb.ID,
		Metadata:       sb.Config.GetMetadata(),
		State:          sandboxState(sb),
		CreatedAt:      sb.CreatedAt.UnixNano(),
		Labels:         sb.Config.GetLabels(),
		Annotations:    sb.Config.GetAnnotations(),
		RuntimeHandler: sb.Handler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
	}
	if len(sb.IPs) > 0 && sb.State == pod.SandboxReady {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: sb.IPs[0]}
		for _, ip := range sb.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st
}

func containerState(c *pod.Container) runtimeapi.ContainerState {
	switch c.State {
	case pod.ContainerCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case pod.ContainerRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case pod.ContainerExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

func imageSpec(c *pod.Container) *runtimeapi.ImageSpec {
	spec := &runtimeapi.ImageSpec{Image: c.ImageID}
	if img := c.Config.GetImage(); img != nil {
		spec.Annotations = img.GetAnnotations()
		spec.UserSpecifiedImage = img.GetUserSpecifiedImage()
		spec.RuntimeHandler = img.GetRuntimeHandler()
	}
	return spec
}

func toContainer(c *pod.Container) *runtimeapi.Container {
	return &runtimeapi.Container{
		Id:           c.ID,
		PodSandboxId: c.SandboxID,
		Metadata:     c.Config.GetMetadata(),
		Image:        imageSpec(c),
		ImageRef:     c.ImageID,
		ImageId:      c.ImageID,
		State:        containerState(c),
		CreatedAt:    c.CreatedAt.UnixNano(),
		Labels:       c.Config.GetLabels(),
		Annotations:  c.Config.GetAnnotations(),
	}
}

func unixNano(t interface {
	IsZero() bool
	UnixNano() int64
}) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func toContainerStatus(c *pod.Container) *runtimeapi.ContainerStatus {
	st := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    c.Config.GetMetadata(),
		State:       containerState(c),
		CreatedAt:   c.CreatedAt.UnixNano(),
		StartedAt:   unixNano(c.StartedAt),
		FinishedAt:  unixNano(c.FinishedAt),
		ExitCode:    c.ExitCode,
		Image:       imageSpec(c),
		ImageRef:    c.ImageID,
		ImageId:     c.ImageID,
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      c.Config.GetLabels(),
		Annotations: c.Config.GetAnnotations(),
		Mounts:      containerMounts(c),
		LogPath:     c.LogPath,
		Resources:   &runtimeapi.ContainerResources{Linux: c.Resources},
		StopSignal:  c.Config.GetStopSignal(),
	}
	if c.Unknown != "" {
		st.Reason, st.Message = "Unknown", c.Unknown
	}
	if c.User != nil {
		groups := make([]int64, len(c.User.Groups))
		for i, g := range c.User.Groups {
			groups[i] = int64(g)
		}
		st.User = &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
			Uid: int64(c.User.UID), Gid: int64(c.User.GID), SupplementalGroups: groups,
		}}
	}
	return st
}

// matchLabels reports whether labels has every pair of selector.
func matchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func nowNano() int64 { return time.Now().UnixNano() }

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// verboseInfo is the record as JSON, for crictl inspect.
func verboseInfo(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(data)
}

func toImage(img *image.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        uint64(img.Size),
		Pinned:      img.Pinned,
		Spec:        &runtimeapi.ImageSpec{Image: img.ID, Annotations: img.Config.Labels},
	}
	uid, name := img.User()
	if uid != nil {
		out.Uid = &runtimeapi.Int64Value{Value: *uid}
	}
	out.Username = name
	return out
}

// containerMounts are the container's mounts as it asked for them, with the
// image ID of each image volume (ImageSpec.image_ref, KEP-5365: which
// digest a tag resolved to).
func containerMounts(c *pod.Container) []*runtimeapi.Mount {
	if len(c.ImageVolumes) == 0 {
		return c.Config.GetMounts()
	}
	ids := map[string]string{}
	for _, v := range c.ImageVolumes {
		ids[v.ContainerPath] = v.ImageID
	}
	out := make([]*runtimeapi.Mount, 0, len(c.Config.GetMounts()))
	for _, m := range c.Config.GetMounts() {
		if id, ok := ids[filepath.Clean(m.GetContainerPath())]; ok && m.GetImage() != nil {
			m = proto.Clone(m).(*runtimeapi.Mount)
			m.Image.ImageRef = id
		}
		out = append(out, m)
	}
	return out
}
