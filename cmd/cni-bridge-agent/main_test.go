package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/cri-shim/cri-shim/pkg/agent"
)

func TestInstallCNI(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "image", "cni-bridge")
	dest := filepath.Join(dir, "host", "opt", "cni", "bin")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second run finds it up to date
		if err := installCNI([]string{"--src", src, "--dest-dir", dest}); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(filepath.Join(dest, "cni-bridge"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("installed plugin mode %v, want 0755", fi.Mode().Perm())
	}
}

// TestDeployManifest decodes deploy/cni-bridge-agent.yaml strictly (a typo
// in a field name fails) and checks what the agent relies on.
func TestDeployManifest(t *testing.T) {
	f, err := os.Open("../../deploy/cni-bridge-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	codecs := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decode:\n%s\n%v", doc, err)
		}
		objs = append(objs, obj)
	}
	var ds *appsv1.DaemonSet
	var role *rbacv1.ClusterRole
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.DaemonSet:
			ds = o
		case *rbacv1.ClusterRole:
			role = o
		}
	}
	if ds == nil || role == nil || len(objs) != 4 {
		t.Fatalf("want a ServiceAccount, ClusterRole, ClusterRoleBinding and DaemonSet, got %d objects", len(objs))
	}
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Resources, []string{"nodes"}) || !slices.Equal(role.Rules[0].Verbs, []string{"get", "list", "watch"}) {
		t.Errorf("ClusterRole rules %+v, want nodes get/list/watch only", role.Rules)
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("DaemonSet is not hostNetwork")
	}
	if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool { return t.Operator == corev1.TolerationOpExists && t.Key == "" }) {
		t.Error("DaemonSet does not tolerate every taint")
	}
	if len(spec.InitContainers) != 1 || !slices.Contains(spec.InitContainers[0].Command, "install-cni") {
		t.Errorf("want an install-cni init container, got %+v", spec.InitContainers)
	}
	agentC := spec.Containers[0]
	if !slices.ContainsFunc(agentC.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) {
		t.Error("NODE_NAME does not come from spec.nodeName")
	}
	// The agent's arguments are flags it knows.
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	opts := agent.DefaultOptions()
	opts.AddFlags(fs)
	if err := fs.Parse(agentC.Command[1:]); err != nil {
		t.Errorf("agent command %v: %v", agentC.Command, err)
	}
	mounts := map[string]string{}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		for _, m := range c.VolumeMounts {
			mounts[m.Name] = m.MountPath
		}
	}
	hostPaths := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.HostPath.Path] = mounts[v.Name] != ""
		}
	}
	for _, p := range []string{"/etc/cni/net.d", "/opt/cni/bin", "/var/lib/cni-bridge"} {
		if !hostPaths[p] {
			t.Errorf("host path %s is not mounted", p)
		}
	}
}
