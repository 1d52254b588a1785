package githubapi

// Check is one check of a commit as another forge reports it (a commit
// status, a build status, a pipeline), already judged, for Judge.
type Check struct {
	// Kind names what it is in the forge's words ("status", "pipeline").
	Kind string
	// Name is the status context, job name or build key.
	Name string
	// Conclusion is the forge's state, as it says it ("success", "running").
	Conclusion string
	State      State
	// Group marks a check that stands for others not reported yet (a
	// GitLab pipeline, as a GitHub check suite): counted when no names
	// are required, never matched by a name.
	Group bool
}

// Judge applies the rules of Client.Checks to checks that another forge
// reported: with names (plain names: no source is pinned), each must name a
// check that is not a Group, and every check it names must have succeeded; a
// name not reported yet is pending. Without names, every check must have
// succeeded and at least one must exist.
func Judge(checks []Check, names []string) Verdict {
	all := make([]check, len(checks))
	kinds := map[string]string{}
	for i, c := range checks {
		kind := c.Kind
		if c.Group {
			// Requirement.matches never matches a suite by name.
			kind = KindCheckSuite
			kinds[c.Name] = c.Kind
		}
		all[i] = check{kind: kind, name: c.Name, conclusion: c.Conclusion, state: c.State}
	}
	reqs := make([]Requirement, len(names))
	for i, n := range names {
		reqs[i] = Requirement{Name: n}
	}
	v := verdict(all, reqs)
	if v.Kind == KindCheckSuite {
		v.Kind = kinds[v.Name]
	}
	return v
}
