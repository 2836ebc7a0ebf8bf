// Package sdnotify tells systemd about a daemon's state: that it has started
// (Type=notify units), that it is stopping, a one-line status for systemctl
// status, and, with WatchdogSec=, that it is still healthy.
//
// Every function is a no-op when the process was not started by systemd
// with a notification socket, so daemons can call them unconditionally. The
// environment variables systemd passes are left in place.
package sdnotify

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Ready tells systemd that the daemon has finished starting up.
func Ready() error {
	return notify(daemon.SdNotifyReady)
}

// Stopping tells systemd that the daemon is shutting down.
func Stopping() error {
	return notify(daemon.SdNotifyStopping)
}

// Status sets the status line systemd shows for the daemon. Newlines in msg
// are replaced by spaces, since they would end the message.
func Status(msg string) error {
	return notify("STATUS=" + strings.ReplaceAll(msg, "\n", " "))
}

// notify sends state to systemd if NOTIFY_SOCKET is set.
func notify(state string) error {
	_, err := daemon.SdNotify(false, state)
	return err
}

// Watchdog keeps systemd's watchdog fed while healthy reports no error, and
// returns when ctx is done. If the watchdog is not enabled for this process
// (WATCHDOG_USEC unset, or WATCHDOG_PID naming another process), it returns
// at once.
//
// Every half watchdog interval it calls healthy, and pings systemd if healthy
// returns nil. If healthy returns an error, Watchdog logs it and skips the
// ping, so that systemd restarts a daemon that stays wedged for a whole
// interval. A nil healthy counts as always healthy; a nil log means
// [slog.Default].
func Watchdog(ctx context.Context, healthy func() error, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Error("systemd watchdog disabled: bad environment", "err", err)
		return
	}
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ping(healthy, log)
		}
	}
}

// ping pings the watchdog if the daemon is healthy.
func ping(healthy func() error, log *slog.Logger) {
	if healthy != nil {
		if err := healthy(); err != nil {
			log.Error("health check failed; not pinging systemd watchdog", "err", err)
			return
		}
	}
	if err := notify(daemon.SdNotifyWatchdog); err != nil {
		log.Warn("pinging systemd watchdog", "err", err)
	}
}
