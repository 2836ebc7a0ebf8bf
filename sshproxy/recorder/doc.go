// Package recorder records the terminal sessions that the recording jump
// proxy relays and keeps each recording until the CA has it.
//
// The proxy records every PTY channel (a session channel that got a
// "pty-req") as one asciicast v2 file, the format of asciinema 2
// (https://docs.asciinema.org/manual/asciicast/v2/), so that
// `asciinema play FILE` replays it and `asciinema cat FILE` prints what the
// user saw. The first line is a JSON header with the terminal size, the start
// time and, as extra keys that players ignore, who the session was (user,
// login, node, session id, client address, proxy, channel); every later line
// is one event: output, input (only when the proxy is configured to record
// keystrokes, which may capture passwords typed at prompts) or a resize. The
// writer keeps every event string valid UTF-8, carrying a character split
// across two SSH packets over to the next event, because players reject a
// file that is not.
//
// Recordings are evidence of what a certificate holder did on a node, and
// nothing of them may be lost across proxy restarts. A [Recorder] therefore
// writes to the proxy's local spool directory first: "<id>.cast.part" (mode
// 0600) while the channel is open, flushed at least every
// [Options.FlushInterval], then synced and renamed to "<id>.cast" when it
// closes. A [Spool] uploads every finished recording to the CA and deletes
// the local copy only once the upload was acknowledged, retrying with backoff
// while the CA is unreachable; at start-up [Spool.Recover] turns what a crash
// left (a ".part" file ending in a half-written line) into a valid recording.
// A crash of the proxy process loses at most the output of the last flush
// interval; a power loss, what the kernel had not yet written.
package recorder
