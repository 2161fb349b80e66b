package devserver

// SetFreePorts replaces how a build finds its ports, until the returned
// func restores it.
func SetFreePorts(f func(ip string, n int) ([]int, error)) (restore func()) {
	old := freePorts
	freePorts = f
	return func() { freePorts = old }
}
