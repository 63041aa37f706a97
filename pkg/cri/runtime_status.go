package cri

import (
	"context"
	"strconv"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-shim/cri-shim/pkg/apparmor"
)

// Status reports the runtime ready and the network ready when a CNI config
// is loaded and its plugins' STATUS succeeds; a broken CNI config never
// stops the runtime from serving.
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	runtimeReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	networkReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if err := s.Pods.NetworkStatus(ctx); err != nil {
		networkReady.Status = false
		networkReady.Reason = "NetworkPluginNotReady"
		networkReady.Message = err.Error()
	}
	resp := &runtimeapi.StatusResponse{
		Status:   &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{runtimeReady, networkReady}},
		Features: &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	for _, h := range s.Pods.HandlerRuntimes() {
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtimeapi.RuntimeHandler{Name: h.Name,
			Features: &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: h.Features.RecursiveReadOnly(), UserNamespaces: h.UserNamespaces}})
	}
	if req.GetVerbose() {
		resp.Info = map[string]string{"runtime": "cri-shim", "cgroupDriver": s.CgroupDriver,
			"apparmor": strconv.FormatBool(s.AppArmor)}
		if s.AppArmor {
			resp.Info["apparmorDefaultProfile"] = apparmor.DefaultProfileName
		}
	}
	return resp, nil
}
