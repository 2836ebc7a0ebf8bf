package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// listFlag is a comma-separated list; repeating the flag adds to it.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return errors.New("empty item in list")
		}
		*l = append(*l, item)
	}
	return nil
}

// label is one key=value selector.
type label struct{ key, value string }

// labelsFlag is a comma-separated list of key=value; repeating the flag
// adds to it.
type labelsFlag []label

func (l *labelsFlag) String() string {
	s := make([]string, len(*l))
	for i, lb := range *l {
		s[i] = lb.key + "=" + lb.value
	}
	return strings.Join(s, ",")
}

func (l *labelsFlag) Set(s string) error {
	for item := range strings.SplitSeq(s, ",") {
		lb, err := parseLabel(strings.TrimSpace(item))
		if err != nil {
			return err
		}
		*l = append(*l, lb)
	}
	return nil
}

func parseLabel(s string) (label, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" || v == "" || strings.ContainsAny(s, " \t") {
		return label{}, fmt.Errorf("label %q must look like key=value", s)
	}
	return label{k, v}, nil
}

// multi returns the labels as node selectors, each key with all its values.
// The key "*" only takes the value "*" (every node).
func (l labelsFlag) multi() (map[string][]string, error) {
	m := map[string][]string{}
	for _, lb := range l {
		if lb.key == "*" && lb.value != "*" {
			return nil, fmt.Errorf("label %q: the key * only takes the value * (*=* selects every node)", lb.key+"="+lb.value)
		}
		if !slices.Contains(m[lb.key], lb.value) {
			m[lb.key] = append(m[lb.key], lb.value)
		}
	}
	return m, nil
}

// single returns the labels as a map, refusing two values for one key.
func (l labelsFlag) single() (map[string]string, error) {
	if len(l) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, lb := range l {
		if v, ok := m[lb.key]; ok && v != lb.value {
			return nil, fmt.Errorf("label %s given twice (%s and %s)", lb.key, v, lb.value)
		}
		m[lb.key] = lb.value
	}
	return m, nil
}

// durationFlag is a non-negative duration such as 15m or 8h.
type durationFlag time.Duration

func (d *durationFlag) String() string {
	if *d == 0 {
		return ""
	}
	return time.Duration(*d).String()
}

func (d *durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration such as 15m or 8h", s)
	}
	*d = durationFlag(v)
	return nil
}

func (d durationFlag) api() api.Duration { return api.Duration(d) }

// timeFlag is an RFC 3339 time, or a duration counted from now: forward
// when ahead is set, backward otherwise.
type timeFlag struct {
	t     time.Time
	ahead bool
}

func (f *timeFlag) String() string {
	if f == nil || f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *timeFlag) Set(s string) error {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return fmt.Errorf("duration %q must be positive", s)
		}
		if !f.ahead {
			d = -d
		}
		f.t = time.Now().Add(d)
		return nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("%q is neither a duration such as 2h nor a time such as 2006-01-02T15:04:05Z", s)
	}
	f.t = t
	return nil
}

// checkCIDRs refuses source addresses that are neither an address nor a
// prefix.
func checkCIDRs(list []string) error {
	for _, s := range list {
		if _, err := netip.ParsePrefix(s); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("source address %q is not an address or CIDR such as 10.0.0.0/8", s)
		}
	}
	return nil
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
