package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestImageVolumes: a Mount with an image (KEP-4639) mounts that image
// read-only but executable, whole or one directory of it; ContainerStatus
// reports the image ID the tag resolved to; the image cannot be removed
// while the container exists; bad requests are refused and leave nothing.
func TestImageVolumes(t *testing.T) {
	r := sharedRuntime(t)
	ctx := r.ctx(t)
	pull, err := r.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: nginxImage}})
	if err != nil {
		t.Fatal(err)
	}
	volume := func(path, sub string) *runtimeapi.Mount {
		return &runtimeapi.Mount{ContainerPath: path, Readonly: true, ImageSubPath: sub,
			Image: &runtimeapi.ImageSpec{Image: nginxImage, UserSpecifiedImage: nginxImage}}
	}
	pod := r.podConfig("imgvol")
	podID := r.runPod(t, pod)
	cfg := container("reader", busyboxImage, "sleep", "3600")
	cfg.Mounts = []*runtimeapi.Mount{volume("/mnt/image", ""), volume("/mnt/html", "usr/share/nginx/html")}
	id := r.startContainer(t, podID, pod, cfg)

	for _, tc := range []struct {
		cmd  []string
		ok   bool
		want string
	}{
		{[]string{"cat", "/mnt/image/usr/share/nginx/html/index.html"}, true, "Welcome to nginx"},
		{[]string{"cat", "/mnt/html/index.html"}, true, "Welcome to nginx"},   // the sub path alone
		{[]string{"ls", "/mnt/html/usr"}, false, ""},                          // not the image root
		{[]string{"touch", "/mnt/image/written"}, false, "Read-only"},         // read-only
		{[]string{"/mnt/image/bin/ls", "/mnt/image/usr/sbin"}, true, "nginx"}, // not noexec
	} {
		out, code := r.execSync(t, id, tc.cmd...)
		if (code == 0) != tc.ok || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, %q; want success %v and %q", tc.cmd, code, out, tc.ok, tc.want)
		}
	}
	st, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	refs := 0
	for _, m := range st.GetStatus().GetMounts() {
		if m.GetImage().GetImage() != "" {
			refs++
			if m.GetImage().GetImageRef() != pull.GetImageRef() {
				t.Errorf("mount %s: image_ref %q, want %q (PullImage's answer)", m.GetContainerPath(), m.GetImage().GetImageRef(), pull.GetImageRef())
			}
		}
	}
	if refs != 2 {
		t.Errorf("ContainerStatus has %d image mounts, want 2: %v", refs, st.GetStatus().GetMounts())
	}
	if _, err := r.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: nginxImage}}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("RemoveImage of an image a volume uses: %v, want FailedPrecondition", err)
	}

	for _, tc := range []struct {
		desc  string
		mount *runtimeapi.Mount
		want  codes.Code
	}{
		{"writable", &runtimeapi.Mount{ContainerPath: "/v", Image: &runtimeapi.ImageSpec{Image: nginxImage}}, codes.InvalidArgument},
		{"a sub path the image lacks", volume("/v", "not-existing"), codes.InvalidArgument},
		{"a sub path out of the image", volume("/v", "../../etc"), codes.InvalidArgument},
		{"an image not pulled", &runtimeapi.Mount{ContainerPath: "/v", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "registry.k8s.io/none:1"}}, codes.NotFound},
	} {
		c := container("bad", busyboxImage, "true")
		c.Mounts = []*runtimeapi.Mount{tc.mount}
		if _, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: c, SandboxConfig: pod}); status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.desc, err, tc.want)
		}
	}
	volumeDirs := func() []string {
		entries, _ := os.ReadDir(filepath.Join(r.dir, "root", "images", "rootfs"))
		var out []string
		for _, e := range entries {
			if strings.Contains(e.Name(), "-iv") {
				out = append(out, e.Name())
			}
		}
		return out
	}
	if v := volumeDirs(); len(v) != 2 {
		t.Errorf("image volume rootfs after the refused containers: %v, want the 2 of %s", v, id)
	}

	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if v := volumeDirs(); len(v) != 0 {
		t.Errorf("image volume rootfs left after the pod went: %v", v)
	}
	if _, err := r.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: nginxImage}}); err != nil {
		t.Errorf("RemoveImage once no volume uses it: %v", err)
	}
}
