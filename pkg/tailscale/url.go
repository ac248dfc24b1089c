package tailscale

import (
	"fmt"
	"net/url"
)

func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("tailscale API URL %q: %w", s, err)
	}
	return u, nil
}
