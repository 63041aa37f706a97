package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

const reportJSON = `[{"SuiteDescription":"CRI validation","SuiteSucceeded":false,"SpecReports":[
 {"ContainerHierarchyTexts":null,"LeafNodeType":"BeforeSuite","LeafNodeText":"","State":"passed"},
 {"ContainerHierarchyTexts":["[k8s.io] Idempotence","StopPodSandbox"],"LeafNodeType":"It","LeafNodeText":"should not return an error if not found","State":"failed",
  "Failure":{"Message":"rpc error: code = NotFound","Location":{"FileName":"/x/idempotence.go","LineNumber":46}}},
 {"ContainerHierarchyTexts":["[k8s.io] Networking"],"LeafNodeType":"It","LeafNodeText":"runtime should support DNS config [Conformance]","State":"passed"},
 {"ContainerHierarchyTexts":["[k8s.io] Image Manager"],"LeafNodeType":"It","LeafNodeText":"public image with digest should be pulled and removed [Conformance]","State":"skipped"},
 {"ContainerHierarchyTexts":["[k8s.io] Streaming"],"LeafNodeType":"It","LeafNodeText":"runtime should support attach [Conformance]","State":"timedout"},
 {"ContainerHierarchyTexts":["[k8s.io] Pending"],"LeafNodeType":"It","LeafNodeText":"later","State":"pending"}
]}]`

func TestSummarizeAndJudge(t *testing.T) {
	var suites []suiteReport
	if err := json.Unmarshal([]byte(reportJSON), &suites); err != nil {
		t.Fatal(err)
	}
	s := summarize(suites)
	if s.passed != 1 || s.failed != 2 || s.skipped != 1 || s.pending != 1 {
		t.Fatalf("passed %d failed %d skipped %d pending %d, want 1 2 1 1", s.passed, s.failed, s.skipped, s.pending)
	}
	stop := "[k8s.io] Idempotence StopPodSandbox should not return an error if not found"
	attach := "[k8s.io] Streaming runtime should support attach [Conformance]"
	dns := "[k8s.io] Networking runtime should support DNS config [Conformance]"

	for _, tc := range []struct {
		desc       string
		known      string
		ok         bool
		unexpected []string
		fixed      []string
	}{
		{desc: "no ratchet: every failure is new", known: "", ok: false, unexpected: []string{stop, attach}},
		{desc: "all failures listed", known: stop + "\t# NotFound\n" + attach + "\n", ok: true},
		{desc: "one failure not listed", known: "# header\n\n" + stop + "\t# reason\n", ok: false, unexpected: []string{attach}},
		{desc: "a listed spec passed", known: stop + "\n" + attach + "\n" + dns + "\t# flaky?\n", ok: false, fixed: []string{dns}},
		{desc: "a listed spec skipped is fine", known: stop + "\n" + attach + "\n[k8s.io] Image Manager public image with digest should be pulled and removed [Conformance]\n", ok: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var known map[string]string
			if tc.known != "" {
				var err error
				if known, err = readKnown(strings.NewReader(tc.known)); err != nil {
					t.Fatal(err)
				}
			}
			v := judge(s, known, nil)
			if v.ok() != tc.ok || !reflect.DeepEqual(v.unexpected, tc.unexpected) || !reflect.DeepEqual(v.fixed, tc.fixed) {
				t.Errorf("ok %v unexpected %q fixed %q; want %v %q %q", v.ok(), v.unexpected, v.fixed, tc.ok, tc.unexpected, tc.fixed)
			}
		})
	}
}

func TestReadKnown(t *testing.T) {
	known, err := readKnown(strings.NewReader("# comment\n\n  \nspec one\t# reason one\nspec two\n   # indented comment\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"spec one": "# reason one", "spec two": ""}
	if !reflect.DeepEqual(known, want) {
		t.Errorf("got %q, want %q", known, want)
	}
}

func TestJudgeSkips(t *testing.T) {
	var suites []suiteReport
	if err := json.Unmarshal([]byte(reportJSON), &suites); err != nil {
		t.Fatal(err)
	}
	s := summarize(suites)
	digest := "[k8s.io] Image Manager public image with digest should be pulled and removed [Conformance]"
	dns := "[k8s.io] Networking runtime should support DNS config [Conformance]"
	attach := "[k8s.io] Streaming runtime should support attach [Conformance]"
	failures := map[string]string{
		"[k8s.io] Idempotence StopPodSandbox should not return an error if not found": "",
		attach: "",
	}
	for _, tc := range []struct {
		desc       string
		skips      string
		ok         bool
		newSkips   []string
		notSkipped []string
	}{
		{desc: "skipped set as listed", skips: digest + "\t# needs the internet\n", ok: true},
		{desc: "a spec skipped that is not listed", skips: "# none\n", ok: false, newSkips: []string{digest}},
		{desc: "a listed skip that passed", skips: digest + "\n" + dns + "\n", ok: false, notSkipped: []string{dns}},
		{desc: "a listed skip that failed", skips: digest + "\n" + attach + "\n", ok: false, notSkipped: []string{attach}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			skips, err := readKnown(strings.NewReader(tc.skips))
			if err != nil {
				t.Fatal(err)
			}
			v := judge(s, failures, skips)
			if v.ok() != tc.ok || !reflect.DeepEqual(v.newSkips, tc.newSkips) || !reflect.DeepEqual(v.notSkipped, tc.notSkipped) {
				t.Errorf("ok %v new skips %q not skipped %q; want %v %q %q", v.ok(), v.newSkips, v.notSkipped, tc.ok, tc.newSkips, tc.notSkipped)
			}
		})
	}
	if v := judge(s, failures, nil); !v.ok() || v.checkedSkips {
		t.Errorf("without a skips file the skipped set is not checked: %+v", v)
	}
}
