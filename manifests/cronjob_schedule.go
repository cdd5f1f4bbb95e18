package manifests

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed 5-field cron schedule: minute hour day-of-month
// month day-of-week, each a list of values, ranges (a-b) and steps (*/n,
// a-b/n, a/n), with month names (JAN-DEC) and day names (SUN-SAT), or one
// of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly.
// As in cron (and Kubernetes), when both day fields are restricted a day
// matches if either does.
type Schedule struct {
	minute, hour, dom, month, dow uint64
	// domStar and dowStar mark a day field written "*" (or "?").
	domStar, dowStar bool
}

type cronField struct {
	name     string
	min, max int
	names    map[string]int
}

var (
	monthNames = map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}
	dayNames   = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
	cronFields = [5]cronField{
		{name: "minute", min: 0, max: 59},
		{name: "hour", min: 0, max: 23},
		{name: "day of month", min: 1, max: 31},
		{name: "month", min: 1, max: 12, names: monthNames},
		{name: "day of week", min: 0, max: 7, names: dayNames},
	}
	cronDescriptors = map[string]string{
		"@yearly":   "0 0 1 1 *",
		"@annually": "0 0 1 1 *",
		"@monthly":  "0 0 1 * *",
		"@weekly":   "0 0 * * 0",
		"@daily":    "0 0 * * *",
		"@midnight": "0 0 * * *",
		"@hourly":   "0 * * * *",
	}
)

// maxScheduleLength bounds the input the parser looks at.
const maxScheduleLength = 1024

// ParseSchedule parses a cron schedule; the error names the field and the
// part that is wrong.
func ParseSchedule(spec string) (*Schedule, error) {
	if len(spec) > maxScheduleLength {
		return nil, fmt.Errorf("must be no more than %d characters", maxScheduleLength)
	}
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "@") {
		d, ok := cronDescriptors[strings.ToLower(spec)]
		if !ok {
			return nil, fmt.Errorf("unrecognized descriptor %q (supported: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)", clip(spec))
		}
		spec = d
	}
	parts := strings.Fields(spec)
	if len(parts) != 5 {
		return nil, fmt.Errorf("expected exactly 5 fields (minute hour day-of-month month day-of-week), found %d", len(parts))
	}
	var s Schedule
	out := [5]*uint64{&s.minute, &s.hour, &s.dom, &s.month, &s.dow}
	for i, p := range parts {
		bits, star, err := parseCronField(p, cronFields[i])
		if err != nil {
			return nil, err
		}
		*out[i] = bits
		switch i {
		case 2:
			s.domStar = star
		case 4:
			s.dowStar = star
		}
	}
	// 7 is Sunday too.
	if s.dow&(1<<7) != 0 {
		s.dow = s.dow&^(1<<7) | 1
	}
	return &s, nil
}

// parseCronField parses one comma-separated field into a bit set; star
// reports a field that is exactly "*" or "?".
func parseCronField(text string, f cronField) (set uint64, star bool, err error) {
	if text == "*" || text == "?" {
		star = true
	}
	for _, item := range strings.Split(text, ",") {
		b, err := parseCronItem(item, f)
		if err != nil {
			return 0, false, err
		}
		set |= b
	}
	return set, star, nil
}

func parseCronItem(item string, f cronField) (uint64, error) {
	bad := func(why string) error {
		return fmt.Errorf("%s field %q: %s", f.name, clip(item), why)
	}
	if item == "" {
		return 0, bad("empty list element")
	}
	rng, stepText, hasStep := strings.Cut(item, "/")
	step := 1
	if hasStep {
		n, err := strconv.Atoi(stepText)
		if err != nil || n <= 0 {
			return 0, bad("step must be a positive number")
		}
		if n > f.max-f.min+1 {
			return 0, bad(fmt.Sprintf("step must be at most %d", f.max-f.min+1))
		}
		step = n
	}
	var lo, hi int
	switch {
	case rng == "*" || rng == "?":
		lo, hi = f.min, f.max
		if f.name == "day of week" {
			hi = 6 // 7 is Sunday again
		}
	default:
		a, b, isRange := strings.Cut(rng, "-")
		var err error
		if lo, err = cronValue(a, f); err != nil {
			return 0, bad(err.Error())
		}
		hi = lo
		if isRange {
			if hi, err = cronValue(b, f); err != nil {
				return 0, bad(err.Error())
			}
			if hi < lo {
				return 0, bad(fmt.Sprintf("range start %d is after its end %d", lo, hi))
			}
		} else if hasStep {
			// "a/n" means a, a+n, ... up to the field's maximum.
			hi = f.max
			if f.name == "day of week" {
				hi = 6
			}
		}
	}
	var set uint64
	for v := lo; v <= hi; v += step {
		set |= 1 << uint(v)
	}
	return set, nil
}

func cronValue(text string, f cronField) (int, error) {
	if text == "" {
		return 0, fmt.Errorf("missing value")
	}
	if v, ok := f.names[strings.ToLower(text)]; ok {
		return v, nil
	}
	n, err := strconv.Atoi(text)
	if err != nil || strings.ContainsAny(text, "+-") {
		return 0, fmt.Errorf("%q is not a number or a name", clip(text))
	}
	if n < f.min || n > f.max {
		return 0, fmt.Errorf("value %d out of range [%d, %d]", n, f.min, f.max)
	}
	return n, nil
}

func has(set uint64, v int) bool { return set&(1<<uint(v)) != 0 }

func (s *Schedule) dayMatches(t time.Time) bool {
	dom, dow := has(s.dom, t.Day()), has(s.dow, int(t.Weekday()))
	if s.domStar || s.dowStar {
		return dom && dow
	}
	return dom || dow
}

// scheduleSearchYears bounds the search for the next time: a schedule
// like "0 0 30 2 *" never fires.
const scheduleSearchYears = 5

// Next returns the first scheduled time strictly after t, in t's location,
// or the zero time when the schedule never fires (e.g. February 30).
func (s *Schedule) Next(t time.Time) time.Time {
	loc := t.Location()
	t = t.Truncate(time.Minute).Add(time.Minute)
	limit := t.Year() + scheduleSearchYears
	for t.Year() <= limit {
		if !has(s.month, int(t.Month())) {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, loc)
			continue
		}
		if !s.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
			continue
		}
		if !has(s.hour, t.Hour()) {
			n := time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, loc)
			if !n.After(t) {
				// A daylight-saving change repeated the hour.
				n = t.Add(time.Hour).Truncate(time.Minute)
			}
			t = n
			continue
		}
		if !has(s.minute, t.Minute()) {
			t = t.Add(time.Minute)
			continue
		}
		if repeatedWallTime(t) {
			// Clocks went back: this wall time already fired.
			t = t.Add(time.Minute)
			continue
		}
		return t
	}
	return time.Time{}
}

// repeatedWallTime reports whether t's wall-clock time already occurred
// earlier, before the clocks were set back (the second 01:30 of a
// daylight-saving end). A wall time that does not exist (skipped when the
// clocks go forward) never matches, so it does not fire that day.
func repeatedWallTime(t time.Time) bool {
	_, off := t.Zone()
	_, before := t.Add(-3 * time.Hour).Zone()
	if before <= off {
		return false
	}
	e := t.Add(-time.Duration(before-off) * time.Second)
	return e.Hour() == t.Hour() && e.Minute() == t.Minute() && e.Day() == t.Day()
}
