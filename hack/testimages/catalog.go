package main

import (
	"fmt"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Upstream names of the images critest v1.36.0 pulls (pkg/validate/consts.go,
// pkg/framework/util.go, pkg/validate/security_context_linux.go,
// pkg/validate/multi_container_linux.go, pkg/benchmark/image.go), plus the
// sandbox image the harness gives the runtime.
const (
	crTools = "gcr.io/k8s-staging-cri-tools/"
	e2e     = "registry.k8s.io/e2e-test-images/"
	ecr     = "public.ecr.aws/docker/library/"

	// SandboxImage is the pause image the harness configures as the runtime's
	// sandbox image. It must not be pause:3.9: two image specs pull that under
	// two names and delete it by ID, expecting exactly two RepoTags.
	SandboxImage = "registry.k8s.io/pause:3.10"
)

// buildOptions are the inputs of a build taken from the host.
type buildOptions struct {
	busybox  string // Debian's dynamically linked busybox
	cacheDir string // where the programs under progs/ are built once
	goBin    string // the go tool ("" finds it)
}

// buildCatalog builds every image. The result is sorted by first name and
// depends only on the host's busybox and shared objects, the go toolchain and
// this program: two builds on one machine give the same digests.
func buildCatalog(o buildOptions) ([]*image, error) {
	progs, err := buildPrograms(o.goBin, o.cacheDir)
	if err != nil {
		return nil, err
	}
	base, err := busyboxBase(o.busybox, progs)
	if err != nil {
		return nil, err
	}
	const baseHistory = "busybox (Debian) with its shared objects, applets as hard links, pgrep, ipcs, users"
	busyboxConfig := v1.Config{Env: []string{defaultPath}, Cmd: []string{"sh"}}

	// busyboxPlus is the base plus one layer, with the busybox config
	// changed by cfg.
	busyboxPlus := func(names []string, about, history string, top *layerBuilder, cfg func(*v1.Config)) (*imageSpec, error) {
		s := &imageSpec{names: names, about: about, layers: []*layer{base}, history: []string{baseHistory}}
		if top != nil {
			l, err := top.build()
			if err != nil {
				return nil, err
			}
			s.layers = append(s.layers, l)
			s.history = append(s.history, history)
		}
		s.config = busyboxConfig
		s.config.Env = append([]string(nil), busyboxConfig.Env...)
		if cfg != nil {
			cfg(&s.config)
		}
		return s, nil
	}
	// marked is the base plus a file named after the image, as upstream's
	// images/image-test/Dockerfile (ADD ${TEST} ${TEST}) makes them distinct.
	marked := func(names []string, about, marker string, cfg func(*v1.Config)) (*imageSpec, error) {
		l := newLayer().file(marker, 0o644, []byte(marker+"\n"))
		return busyboxPlus(names, about, "ADD "+marker, l, cfg)
	}
	user := func(u string) func(*v1.Config) { return func(c *v1.Config) { c.User = u } }

	nginxLayer := func(conf string) *layerBuilder {
		l := newLayer().
			file("usr/sbin/nginx", 0o755, progs["webserver"]).
			dir("var/log/nginx", 0o755, 0, 0).
			dir("var/cache/nginx", 0o755, 0, 0).
			file("usr/share/nginx/html/index.html", 0o644, []byte("<h1>Welcome to nginx!</h1>\n"))
		if conf != "" {
			l.file("etc/nginx/conf.d/default.conf", 0o644, []byte(conf))
		}
		return l
	}
	nginxConfig := func(c *v1.Config) {
		c.Cmd = []string{"nginx", "-g", "daemon off;"}
		c.ExposedPorts = map[string]struct{}{"80/tcp": {}}
		c.StopSignal = "SIGTERM"
	}

	pauseLayer := newLayer().file("pause", 0o755, progs["pause"])
	pauseBlob, err := pauseLayer.build()
	if err != nil {
		return nil, err
	}
	pause := func(names []string, about string, labels map[string]string) *imageSpec {
		return &imageSpec{
			names: names, about: about,
			layers: []*layer{pauseBlob}, history: []string{"pause"},
			config: v1.Config{
				Env: []string{defaultPath}, Entrypoint: []string{"/pause"},
				User: "65535:65535", WorkingDir: "/", Labels: labels,
			},
		}
	}

	var specs []*imageSpec
	add := func(s *imageSpec, err error) error {
		if err != nil {
			return err
		}
		specs = append(specs, s)
		return nil
	}
	steps := []func() error{
		func() error {
			return add(busyboxPlus([]string{e2e + "busybox:1.29-2"},
				"default test container: busybox, Cmd sh", "", nil, nil))
		},
		func() error {
			return add(busyboxPlus([]string{e2e + "nginx:1.14-2"},
				"nginx stand-in: HTTP 200 on :80, /var/run/nginx.pid, cmdline 'nginx: master process'",
				"nginx stand-in", nginxLayer(""), nginxConfig))
		},
		func() error {
			return add(busyboxPlus([]string{crTools + "hostnet-nginx-amd64:latest"},
				"host-network nginx stand-in: HTTP 200 on :12003",
				"nginx stand-in listening on 12003",
				nginxLayer("server {\n    listen 12003;\n    location / {\n        root /usr/share/nginx/html;\n    }\n}\n"),
				nginxConfig))
		},
		func() error {
			l := newLayer().
				file("usr/local/apache2/bin/httpd", 0o755, progs["webserver"]).
				file("usr/local/apache2/htdocs/index.html", 0o644, []byte("<html><body><h1>It works!</h1></body></html>\n"))
			return add(busyboxPlus([]string{e2e + "httpd:2.4.39-4"},
				"httpd stand-in: HTTP 200 on :80, logs 'httpd'", "httpd stand-in", l,
				func(c *v1.Config) {
					c.Env = []string{"PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HTTPD_PREFIX=/usr/local/apache2"}
					c.WorkingDir = "/usr/local/apache2"
					c.Cmd = []string{"httpd", "-DFOREGROUND"}
					c.ExposedPorts = map[string]struct{}{"80/tcp": {}}
				}))
		},
		func() error {
			l := newLayer().file("usr/local/bin/nnp", 0o4755, progs["nonewprivs"])
			return add(busyboxPlus([]string{e2e + "nonewprivs:1.3"},
				"setuid-root /usr/local/bin/nnp printing 'Effective uid: N'", "setuid nnp", l,
				func(c *v1.Config) { c.Cmd = []string{"/usr/local/bin/nnp"} }))
		},
		func() error {
			return add(pause([]string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"},
				"pause, one image under two registries, User 65535", nil), nil)
		},
		func() error {
			return add(pause([]string{SandboxImage},
				"pause for the runtime's sandbox image (distinct from pause:3.9)",
				map[string]string{"io.cri-shim.testimages.role": "sandbox"}), nil)
		},
		func() error {
			return add(marked([]string{crTools + "test-image-latest:latest"}, "test image (no tag)", "test-image-latest", nil))
		},
		func() error {
			return add(marked([]string{crTools + "test-image-tag:test"}, "test image by tag", "test-image-tag-test", nil))
		},
		func() error {
			return add(marked([]string{crTools + "test-image-tag:all"}, "test image for all kinds of references", "test-image-tag-all", nil))
		},
		func() error {
			// critest pulls it by an upstream digest that cannot exist here
			// (its spec is skipped); served by tag for completeness.
			return add(marked([]string{crTools + "test-image-digest:latest"}, "test image (upstream pins a digest)", "test-image-digest", nil))
		},
		func() error {
			return add(marked([]string{crTools + "test-image-tags:1", crTools + "test-image-tags:2", crTools + "test-image-tags:3"},
				"one test image under three tags", "test-image-tags", nil))
		},
		func() error {
			return add(marked([]string{crTools + "test-image-user-uid:latest"}, "User 1002", "test-image-user-uid", user("1002")))
		},
		func() error {
			return add(marked([]string{crTools + "test-image-user-username:latest"}, "User www-data", "test-image-user-username", user("www-data")))
		},
		func() error {
			return add(marked([]string{crTools + "test-image-user-uid-group:latest"}, "User 1003:1004", "test-image-user-uid-group", user("1003:1004")))
		},
		func() error {
			return add(marked([]string{crTools + "test-image-user-username-group:latest"}, "User www-data:1004", "test-image-user-username-group", user("www-data:1004")))
		},
		func() error {
			// As upstream: adduser -u 1000 -D default-user; addgroup -g 50000
			// group-defined-in-image; addgroup default-user group-defined-in-image.
			l := newLayer().
				file("etc/passwd", 0o644, []byte(passwd+"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n")).
				file("etc/group", 0o644, []byte(group+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")).
				dir("home/default-user", 0o755, 1000, 1000)
			return add(busyboxPlus([]string{crTools + "test-image-predefined-group:latest"},
				"User 1000 (default-user), member of group 50000 defined in /etc/group",
				"adduser default-user, addgroup group-defined-in-image", l, user("1000")))
		},
	}
	for i := range 3 {
		n := fmt.Sprintf("test-image-%d", i+1)
		steps = append(steps, func() error {
			return add(marked([]string{crTools + n + ":latest"}, "distinct test image", n, nil))
		})
	}
	for _, tag := range []string{"1.35.0-glibc", "1-uclibc", "1", "1-glibc", "1-musl"} {
		steps = append(steps, func() error {
			return add(marked([]string{ecr + "busybox:" + tag}, "image benchmark: distinct busybox", "busybox-"+tag, nil))
		})
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}

	images := make([]*image, 0, len(specs))
	seen := map[string]bool{}
	for _, s := range specs {
		for _, n := range s.names {
			if _, _, err := repoAndTag(n); err != nil {
				return nil, err
			}
			if seen[n] {
				return nil, fmt.Errorf("image %s defined twice", n)
			}
			seen[n] = true
		}
		img, err := s.build()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", s.names[0], err)
		}
		images = append(images, img)
	}
	sort.Slice(images, func(i, j int) bool { return images[i].names[0] < images[j].names[0] })
	return images, nil
}
