package cri

// streamBatch is how many items one message of a Stream* list RPC carries:
// the lists can exceed a message's size limit on a busy node, which is why
// cri-api v0.37 added the streaming variants.
const streamBatch = 100

// sendBatches sends items in batches of streamBatch, each item once.
func sendBatches[T any](items []T, send func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), streamBatch)
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}
