package e2e

import (
	"bytes"
	"encoding/json"
)

// jsonUnmarshalStrict decodes exactly one JSON value with known fields.
func jsonUnmarshalStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
