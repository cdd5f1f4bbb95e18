package api

import (
	"sync"
	"time"

	"github.com/edgeorch/edgeorch/metrics"
	"github.com/nats-io/nats.go/micro"
)

// API request figures, in metrics.Default (docs/metrics.md).
var (
	requestDuration = metrics.NewHistogramVec("edge_api_request_duration_seconds",
		"Time from the receipt of an API request to its reply, by verb (endpoint) and result code (OK, NotFound, Conflict, Invalid, ...).",
		metrics.DefBuckets, "verb", "code")
	inFlight         = metrics.NewGaugeVec("edge_api_requests_in_flight", "API requests being handled.")
	requestsInFlight = inFlight.With()
)

func init() {
	metrics.Default.MustRegister(requestDuration, inFlight)
}

// respondTimed is respond that first records the request's duration
// since start under its verb and result code (first: a caller that has its
// reply finds the request counted).
func (s *Server) respondTimed(verb string, req micro.Request, res any, err error, start time.Time) {
	h := okSeries(verb)
	if err != nil {
		h = requestDuration.With(verb, statusError(err).Code)
	}
	h.Observe(time.Since(start).Seconds())
	s.respond(verb, req, res, err)
}

// okByVerb caches the OK series of each verb: the common case costs no
// label lookup.
var okByVerb sync.Map // verb -> *metrics.Histogram

func okSeries(verb string) *metrics.Histogram {
	if h, ok := okByVerb.Load(verb); ok {
		return h.(*metrics.Histogram)
	}
	h, _ := okByVerb.LoadOrStore(verb, requestDuration.With(verb, "OK"))
	return h.(*metrics.Histogram)
}
