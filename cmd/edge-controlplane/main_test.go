package main

import (
	"bytes"
	"log/slog"
	"testing"
)

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		got, err := parseLevel(in)
		if err != nil || got != want {
			t.Errorf("parseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseLevel("loud"); err == nil {
		t.Error("parseLevel(loud): want error")
	}
}

func TestFlagDefaults(t *testing.T) {
	cmd := newCommand()
	for name, want := range map[string]string{
		"data-dir": "./edge-data", "listen": "127.0.0.1:4222", "nats-url": "",
		"sync-always": "true", "replicas": "1", "log-level": "info",
		"service-cidr": "10.96.0.0/16", "cluster-cidr": "10.128.0.0/10",
	} {
		f := cmd.Flags().Lookup(name)
		if f == nil || f.DefValue != want {
			t.Errorf("flag --%s: %+v, want default %q", name, f, want)
		}
	}
}

func TestBadFlagsFail(t *testing.T) {
	cmd := newCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--log-level", "loud", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"})
	if err := cmd.Execute(); err == nil {
		t.Fatal("want error for a bad log level")
	}
	cmd = newCommand()
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"extra-arg"})
	if err := cmd.Execute(); err == nil {
		t.Fatal("want error for an argument")
	}
}
