package deployer

import (
	"math"
	"strings"
	"testing"
)

// Caps that are not caps are refused, naming the subdirective.
func TestLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    Limits
		want string
	}{
		{"nothing", Limits{}, "give cpu, memory or both"},
		{"negative cpu", Limits{CPU: -1}, "limits: cpu -1"},
		{"NaN cpu", Limits{CPU: math.NaN()}, "limits: cpu NaN"},
		{"tiny cpu", Limits{CPU: 0.001}, "below the smallest cap"},
		{"tiny memory", Limits{Memory: 1 << 10}, "at least 4 MiB"},
		{"negative memory", Limits{Memory: -5}, "limits: memory -5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.l.validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validate() = %v, want it to say %q", err, tc.want)
			}
		})
	}
	for _, l := range []Limits{{CPU: 1.5}, {Memory: 512 << 20}, {CPU: 0.5, Memory: 64 << 20}} {
		if err := l.validate(); err != nil {
			t.Errorf("%+v: %v", l, err)
		}
	}
}
