package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The import service is cri-shim's own addition to the CRI socket: the CRI
// has no way to load an image archive, and `cri-shim images import` (like
// `ctr images import`, which kind's `load docker-image` uses) must put it
// into the running daemon's store. The request is a client stream of
// archive bytes; the answer lists the imported images as JSON. It uses
// well-known protobuf wrapper types, so it needs no generated code.
const (
	importServiceName = "crishim.v1.Images"
	importMethod      = "/" + importServiceName + "/Import"
)

// ImportedImage is one entry of the import's answer.
type ImportedImage struct {
	ID       string   `json:"id"`
	RepoTags []string `json:"repoTags"`
}

var importServiceDesc = grpc.ServiceDesc{
	ServiceName: importServiceName,
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Import",
		ClientStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			return srv.(*Server).importImages(stream)
		},
	}},
}

// importImages feeds the streamed archive to the image store.
func (s *Server) importImages(stream grpc.ServerStream) error {
	pr, pw := io.Pipe()
	go func() {
		for {
			chunk := new(wrapperspb.BytesValue)
			if err := stream.RecvMsg(chunk); err != nil {
				if err == io.EOF {
					pw.Close()
				} else {
					pw.CloseWithError(err)
				}
				return
			}
			if _, err := pw.Write(chunk.GetValue()); err != nil {
				return
			}
		}
	}()
	imgs, err := s.Images.Import(stream.Context(), pr)
	pr.CloseWithError(io.ErrClosedPipe) // unblock the receiver if the store stopped early
	if err != nil {
		return toStatus(fmt.Errorf("import: %w", err))
	}
	out := make([]ImportedImage, len(imgs))
	for i, img := range imgs {
		out[i] = ImportedImage{ID: img.ID, RepoTags: img.RepoTags}
	}
	data, _ := json.Marshal(out)
	return stream.SendMsg(wrapperspb.String(string(data)))
}

// ImportClient streams an archive to a running cri-shim and returns what
// it imported.
func ImportClient(conn *grpc.ClientConn, r io.Reader) ([]ImportedImage, error) {
	stream, err := conn.NewStream(context.Background(), &importServiceDesc.Streams[0], importMethod)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<20)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := stream.SendMsg(wrapperspb.Bytes(buf[:n])); err != nil {
				return nil, fmt.Errorf("send archive: %w", err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, rerr
		}
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	answer := new(wrapperspb.StringValue)
	if err := stream.RecvMsg(answer); err != nil {
		return nil, err
	}
	var out []ImportedImage
	if err := json.Unmarshal([]byte(answer.GetValue()), &out); err != nil {
		return nil, err
	}
	return out, nil
}
