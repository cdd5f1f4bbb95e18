package podstatus

import "time"

// BackoffResetAfter is how long a container must run before its restart
// back-off starts again from the base delay (as in the kubelet).
const BackoffResetAfter = 10 * time.Minute

// Backoff is the kubelet's restart back-off: the first restart is
// immediate, then base, 2*base, ... up to max.
type Backoff struct {
	Base, Max time.Duration
	n         int
}

// Next returns the delay before the next restart of a container that ran
// for ran, and advances the back-off.
func (b *Backoff) Next(ran time.Duration) time.Duration {
	if ran >= BackoffResetAfter {
		b.n = 0
	}
	var d time.Duration
	if b.n > 0 {
		d = b.Base
		for i := 1; i < b.n && d < b.Max; i++ {
			d *= 2
		}
		if d > b.Max {
			d = b.Max
		}
	}
	b.n++
	return d
}

// Reset starts the back-off over.
func (b *Backoff) Reset() { b.n = 0 }

// Failure returns the delay before retrying after a failed attempt (image
// pull, configuration error): base, 2*base, ... up to max.
func (b *Backoff) Failure() time.Duration {
	d := b.Base
	for i := 0; i < b.n && d < b.Max; i++ {
		d *= 2
	}
	if d > b.Max {
		d = b.Max
	}
	b.n++
	return d
}
