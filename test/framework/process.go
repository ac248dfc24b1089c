package framework

import (
	"os"
	"time"
)

// StopProcess asks p to end with sig and waits up to grace for done (which
// yields or closes when p has been waited for); then it kills p and waits
// again. It says whether p had to be killed.
func StopProcess[T any](p *os.Process, done <-chan T, sig os.Signal, grace time.Duration) (killed bool) {
	_ = p.Signal(sig)
	select {
	case <-done:
		return false
	case <-time.After(grace):
		_ = p.Kill()
		<-done
		return true
	}
}
