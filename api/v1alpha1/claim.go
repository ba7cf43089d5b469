package v1alpha1

// ClaimsBefore reports whether es claimed its Service before other did: it was created first, or
// in the same second with a name that sorts first. Of the ElastiServices in a namespace that name
// one Service, the one that claims it first owns it; the controller refuses the others.
func (es *ElastiService) ClaimsBefore(other *ElastiService) bool {
	if !es.CreationTimestamp.Equal(&other.CreationTimestamp) {
		return es.CreationTimestamp.Before(&other.CreationTimestamp)
	}
	return es.Name < other.Name
}
