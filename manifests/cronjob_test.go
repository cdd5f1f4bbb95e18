package manifests

import (
	"strings"
	"testing"
	"time"
)

func TestParseScheduleNext(t *testing.T) {
	utc := time.UTC
	base := time.Date(2026, 3, 14, 10, 7, 30, 0, utc) // a Saturday
	for _, tc := range []struct {
		spec string
		from time.Time
		want []time.Time
	}{
		{"*/15 * * * *", base, []time.Time{
			time.Date(2026, 3, 14, 10, 15, 0, 0, utc), time.Date(2026, 3, 14, 10, 30, 0, 0, utc), time.Date(2026, 3, 14, 10, 45, 0, 0, utc), time.Date(2026, 3, 14, 11, 0, 0, 0, utc)}},
		{"5,10-12 8 * * *", base, []time.Time{
			time.Date(2026, 3, 15, 8, 5, 0, 0, utc), time.Date(2026, 3, 15, 8, 10, 0, 0, utc), time.Date(2026, 3, 15, 8, 11, 0, 0, utc), time.Date(2026, 3, 15, 8, 12, 0, 0, utc), time.Date(2026, 3, 16, 8, 5, 0, 0, utc)}},
		{"0 9 * * MON-FRI", base, []time.Time{
			time.Date(2026, 3, 16, 9, 0, 0, 0, utc), time.Date(2026, 3, 17, 9, 0, 0, 0, utc)}},
		{"0 0 1 jan,Jul *", base, []time.Time{
			time.Date(2026, 7, 1, 0, 0, 0, 0, utc), time.Date(2027, 1, 1, 0, 0, 0, 0, utc)}},
		{"@hourly", base, []time.Time{time.Date(2026, 3, 14, 11, 0, 0, 0, utc)}},
		{"@daily", base, []time.Time{time.Date(2026, 3, 15, 0, 0, 0, 0, utc)}},
		{"@midnight", base, []time.Time{time.Date(2026, 3, 15, 0, 0, 0, 0, utc)}},
		{"@weekly", base, []time.Time{time.Date(2026, 3, 15, 0, 0, 0, 0, utc), time.Date(2026, 3, 22, 0, 0, 0, 0, utc)}},
		{"@monthly", base, []time.Time{time.Date(2026, 4, 1, 0, 0, 0, 0, utc)}},
		{"@yearly", base, []time.Time{time.Date(2027, 1, 1, 0, 0, 0, 0, utc)}},
		{"@ANNUALLY", base, []time.Time{time.Date(2027, 1, 1, 0, 0, 0, 0, utc)}},
		// Both day fields restricted: either matches (the 20th, or a Monday).
		{"0 0 20 * 1", base, []time.Time{
			time.Date(2026, 3, 16, 0, 0, 0, 0, utc), time.Date(2026, 3, 20, 0, 0, 0, 0, utc), time.Date(2026, 3, 23, 0, 0, 0, 0, utc)}},
		// Day of week restricted, day of month "*": only Sundays (7 = 0).
		{"30 6 * * 7", base, []time.Time{time.Date(2026, 3, 15, 6, 30, 0, 0, utc), time.Date(2026, 3, 22, 6, 30, 0, 0, utc)}},
		// "a/n": from a to the end of the range.
		{"50/5 10 * * *", base, []time.Time{time.Date(2026, 3, 14, 10, 50, 0, 0, utc), time.Date(2026, 3, 14, 10, 55, 0, 0, utc), time.Date(2026, 3, 15, 10, 50, 0, 0, utc)}},
		{"0 0-12/6 * * *", base, []time.Time{time.Date(2026, 3, 14, 12, 0, 0, 0, utc), time.Date(2026, 3, 15, 0, 0, 0, 0, utc), time.Date(2026, 3, 15, 6, 0, 0, 0, utc)}},
		// Leap day.
		{"0 0 29 2 *", base, []time.Time{time.Date(2028, 2, 29, 0, 0, 0, 0, utc)}},
		// Exactly on a scheduled time: the next one is strictly after.
		{"7 10 * * *", time.Date(2026, 3, 14, 10, 7, 0, 0, utc), []time.Time{time.Date(2026, 3, 15, 10, 7, 0, 0, utc)}},
	} {
		s, err := ParseSchedule(tc.spec)
		if err != nil {
			t.Fatalf("%q: %v", tc.spec, err)
		}
		at := tc.from
		for i, w := range tc.want {
			at = s.Next(at)
			if !at.Equal(w) {
				t.Fatalf("%q: time %d = %v, want %v", tc.spec, i, at, w)
			}
		}
	}
}

func TestScheduleNeverFires(t *testing.T) {
	s, err := ParseSchedule("0 0 30 2 *")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); !n.IsZero() {
		t.Fatalf("February 30 fired at %v", n)
	}
}

func TestScheduleTimeZoneAndDST(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no zoneinfo: %v", err)
	}
	s, err := ParseSchedule("30 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	// 2026-03-08 02:30 does not exist in New York (clocks jump 2:00 -> 3:00).
	// That day is skipped (as cron does).
	got := s.Next(time.Date(2026, 3, 7, 12, 0, 0, 0, ny))
	if want := time.Date(2026, 3, 9, 2, 30, 0, 0, ny); !got.Equal(want) {
		t.Fatalf("next across the spring-forward gap = %v, want %v", got, want)
	}
	// 2026-11-01 01:30 happens twice in New York: the schedule fires once.
	r, _ := ParseSchedule("30 1 * * *")
	first := r.Next(time.Date(2026, 10, 31, 12, 0, 0, 0, ny))
	if want := time.Date(2026, 11, 1, 1, 30, 0, 0, ny); first.Hour() != 1 || first.Day() != 1 || first.Sub(want).Abs() > time.Hour {
		t.Fatalf("first 01:30 = %v", first)
	}
	if second := r.Next(first); second.Day() != 2 || second.Hour() != 1 || second.Minute() != 30 {
		t.Fatalf("after %v: %v, want 2026-11-02 01:30", first, second)
	}
	// Hourly across the fall-back change: strictly increasing, the
	// repeated 01:00 fires once (so 01:00 EDT is followed by 02:00 EST).
	h, _ := ParseSchedule("0 * * * *")
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, ny)
	for range 5 {
		n := h.Next(at)
		if !n.After(at) || n.Sub(at) > 2*time.Hour || n.Minute() != 0 {
			t.Fatalf("hourly after %v: %v", at, n)
		}
		at = n
	}
	// The same schedule in two zones fires at different instants.
	u := s.Next(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	n := s.Next(time.Date(2026, 6, 1, 0, 0, 0, 0, ny))
	if d := n.Sub(u); d != 4*time.Hour {
		t.Fatalf("New York 02:30 is %v after UTC 02:30, want 4h", d)
	}
}

func TestParseScheduleErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"":                                      "expected exactly 5 fields",
		"* * * *":                               "expected exactly 5 fields",
		"* * * * * *":                           "expected exactly 5 fields",
		"60 * * * *":                            `minute field "60": value 60 out of range [0, 59]`,
		"* 24 * * *":                            "hour field",
		"* * 0 * *":                             "day of month field",
		"* * * 13 *":                            "month field",
		"* * * * 8":                             "day of week field",
		"* * * FOO *":                           `"FOO" is not a number or a name`,
		"5-1 * * * *":                           "range start 5 is after its end 1",
		"*/0 * * * *":                           "step must be a positive number",
		"*/61 * * * *":                          "step must be at most 60",
		"1,,2 * * * *":                          "empty list element",
		"-1 * * * *":                            "missing value",
		"+1 * * * *":                            "is not a number",
		"@every 5m":                             "unrecognized descriptor",
		"@reboot":                               "unrecognized descriptor",
		"1-2-3 * * * *":                         "is not a number",
		"* * * jan-foo *":                       "not a number or a name",
		"* * * * mon/x":                         "step must be a positive number",
		strings.Repeat("1,", 600) + "1 * * * *": "no more than",
	} {
		_, err := ParseSchedule(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", spec, err, want)
		}
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"*/5 * * * *", "0 9 * * MON-FRI", "@daily", "0 0 29 2 *", "1,2,3-9/2 0-23/4 1-31 jan-dec sun-sat", "5/10 * ? * 7"} {
		f.Add(s)
	}
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseSchedule(spec)
		if err != nil {
			if s != nil {
				t.Fatal("a schedule with an error")
			}
			return
		}
		n := s.Next(from)
		if n.IsZero() {
			return
		}
		if !n.After(from) || n.Second() != 0 {
			t.Fatalf("%q: next %v after %v", spec, n, from)
		}
		if !has(s.minute, n.Minute()) || !has(s.hour, n.Hour()) || !has(s.month, int(n.Month())) || !s.dayMatches(n) {
			t.Fatalf("%q: %v does not match the schedule", spec, n)
		}
		// Nothing in between matches.
		for m := from.Add(time.Minute); m.Before(n) && m.Sub(from) < 48*time.Hour; m = m.Add(time.Minute) {
			if has(s.minute, m.Minute()) && has(s.hour, m.Hour()) && has(s.month, int(m.Month())) && s.dayMatches(m) {
				t.Fatalf("%q: %v matches before next %v", spec, m, n)
			}
		}
	})
}

const cronJobYAML = `apiVersion: batch/v1
kind: CronJob
metadata:
  name: backup
spec:
  schedule: "0 3 * * *"
  timeZone: Europe/Paris
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: b
            image: busybox
`

func TestDecodeCronJob(t *testing.T) {
	objs, err := Decode([]byte(cronJobYAML))
	if err != nil {
		t.Fatal(err)
	}
	cj := objs[0].(*CronJob)
	Default(cj)
	if err := Validate(cj); err != nil {
		t.Fatal(err)
	}
	if cj.Spec.ConcurrencyPolicy != AllowConcurrent || *cj.Spec.SuccessfulJobsHistoryLimit != 3 || *cj.Spec.FailedJobsHistoryLimit != 1 || *cj.Spec.Suspend {
		t.Fatalf("defaults: %+v", cj.Spec)
	}
	if k, err := KindForResource("cj"); err != nil || k.Kind != "CronJob" {
		t.Fatalf("cj resolves to %v, %v", k.Kind, err)
	}
	for _, tc := range []struct{ from, to, want string }{
		{`schedule: "0 3 * * *"`, `schedule: "0 25 * * *"`, `spec.schedule: invalid value "0 25 * * *": hour field`},
		{`schedule: "0 3 * * *"`, `schedule: "CRON_TZ=UTC 0 3 * * *"`, "spec.schedule"},
		{`timeZone: Europe/Paris`, `timeZone: Mars/Olympus`, `spec.timeZone: invalid value "Mars/Olympus": unknown time zone`},
		{`timeZone: Europe/Paris`, `timeZone: Local`, `spec.timeZone`},
		{`timeZone: Europe/Paris`, "timeZone: UTC\n  concurrencyPolicy: Sometimes", `spec.concurrencyPolicy: unsupported value "Sometimes"`},
		{`timeZone: Europe/Paris`, "timeZone: UTC\n  startingDeadlineSeconds: -1", `spec.startingDeadlineSeconds`},
		{`timeZone: Europe/Paris`, "timeZone: UTC\n  successfulJobsHistoryLimit: -1", `spec.successfulJobsHistoryLimit`},
		{`restartPolicy: OnFailure`, `restartPolicy: Always`, `spec.jobTemplate.spec.template.spec.restartPolicy: unsupported value "Always"`},
		{`name: backup`, "name: " + strings.Repeat("a", 53), "metadata.name"},
		{`timeZone: Europe/Paris`, "timeZone: UTC\n  scheduel: x", "scheduel"},
	} {
		in := strings.Replace(cronJobYAML, tc.from, tc.to, 1)
		objs, err := Decode([]byte(in))
		if err == nil {
			Default(objs[0])
			err = Validate(objs[0])
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.to, err, tc.want)
		}
	}
}
