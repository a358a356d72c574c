// Cadenza web player — live.js
// The websocket client for ws(s)://<host>/ws, the token in its subprotocols (protocols()
// gives ["cadenza.v1", "cadenza.token.<token>"]): answers {"type":"ping","ts"}
// with {"type":"pong","ts"}, hands every other JSON message to onMessage, and reconnects.
// Close 4401 (bad/expired token): stop and call onUnauthorized, never reconnect.
// Close 4408 (client too slow), 4429 (too many players open for this listener), 1013
// (server full) and any other close: reconnect with exponential backoff,
// 0.5 s doubling to 15 s with +/-25 % jitter, reset once a connection has delivered a message.
// onState({state, label}) reports 'connected' | 'reconnecting' | 'offline' every second
// while waiting, so the UI can show "reconnecting in Ns". Uses no REST endpoint itself;
// onSuspectAuth() lets the app check the token (GET /api/me) when handshakes keep failing,
// because a handshake refused before accept() reaches the browser only as close code 1006.
// play() reports a play on the open socket ({"type":"play","ref","data"}) and resolves with
// the gateway's play_ack (rejects on play_error, a close or PLAY_TIMEOUT_MS); null when not
// connected, so the caller posts it instead (with the same event_id: one event either way).

const BASE_MS = 500;
const MAX_MS = 15000;
const PLAY_TIMEOUT_MS = 10000;

export class LiveConnection {
  constructor({ url, protocols, onMessage, onState, onUnauthorized, onSuspectAuth }) {
    this.url = url;
    this.protocols = protocols || (() => []);
    this.onMessage = onMessage;
    this.onState = onState;
    this.onUnauthorized = onUnauthorized;
    this.onSuspectAuth = onSuspectAuth || (() => {});
    this.ws = null;
    this.stopped = true;
    this.attempt = 0;
    this.failedHandshakes = 0;
    this.retryTimer = null;
    this.tickTimer = null;
    this.retryAt = 0;
    this.refs = 0;
    this.waiting = new Map(); // ref -> {resolve, reject, timer}
    window.addEventListener('online', () => this._retryNow());
    window.addEventListener('offline', () => {
      if (!this.stopped && !this.ws) this._emit('offline', 'Offline — waiting for the network');
    });
  }

  start() {
    this.stop(true);
    this.stopped = false;
    this.attempt = 0;
    this.failedHandshakes = 0;
    this._connect();
  }

  /** Close the socket and stay offline until start(). */
  stop(silent = false) {
    this.stopped = true;
    this._clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try { ws.close(1000, 'bye'); } catch { /* already closing */ }
    }
    if (!silent) this._emit('offline', 'Offline');
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  play(data) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return null;
    const ref = `p${++this.refs}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this._settle(ref, null, new Error('no answer from the gateway')), PLAY_TIMEOUT_MS);
      this.waiting.set(ref, { resolve, reject, timer });
      if (!this.send({ type: 'play', ref, data })) this._settle(ref, null, new Error('not connected'));
    });
  }

  _settle(ref, value, error) {
    const w = this.waiting.get(ref);
    if (!w) return;
    this.waiting.delete(ref);
    clearTimeout(w.timer);
    if (error) w.reject(error); else w.resolve(value);
  }

  _failWaiting(why) {
    for (const ref of [...this.waiting.keys()]) this._settle(ref, null, new Error(why));
  }

  _connect() {
    this._clearTimers();
    if (this.stopped) return;
    this._emit('reconnecting', this.attempt === 0 ? 'Connecting…' : 'Reconnecting…');
    let ws;
    try {
      ws = new WebSocket(this.url(), this.protocols());
    } catch (err) {
      console.warn('websocket:', err);
      this._scheduleRetry();
      return;
    }
    this.ws = ws;
    let opened = false;
    let delivered = false;

    ws.onopen = () => {
      if (this.ws !== ws) return;
      opened = true;
      this.failedHandshakes = 0;
      this._emit('connected', 'Live');
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      if (!delivered) {
        delivered = true;
        this.attempt = 0; // a connection that works: next outage starts from 0.5 s again
      }
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (!msg || typeof msg !== 'object') return;
      if (msg.type === 'ping') {
        this.send({ type: 'pong', ts: msg.ts });
        return;
      }
      if (msg.type === 'play_ack' || msg.type === 'play_error') {
        const err = msg.type === 'play_error' ? Object.assign(new Error(msg.error || 'play refused'), { status: msg.status }) : null;
        this._settle(String(msg.ref), msg, err);
        return;
      }
      try { this.onMessage(msg); } catch (err) { console.error('live message handler:', err); }
    };
    ws.onerror = () => { /* a close event always follows */ };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._failWaiting('the connection closed');
      if (this.stopped) return;
      if (ev.code === 4401) {
        this.stopped = true;
        this._clearTimers();
        this._emit('offline', 'Signed out');
        this.onUnauthorized();
        return;
      }
      if (!opened) {
        this.failedHandshakes += 1;
        if (this.failedHandshakes >= 2) this.onSuspectAuth();
      }
      this._scheduleRetry();
    };
  }

  _scheduleRetry() {
    if (this.stopped) return;
    const base = Math.min(MAX_MS, BASE_MS * 2 ** this.attempt);
    const delay = Math.min(MAX_MS, Math.round(base * (0.75 + Math.random() * 0.5)));
    this.attempt = Math.min(this.attempt + 1, 8);
    this.retryAt = Date.now() + delay;
    this.retryTimer = setTimeout(() => this._connect(), delay);
    const tick = () => {
      if (navigator.onLine === false) {
        this._emit('offline', 'Offline — waiting for the network');
        return;
      }
      const secs = Math.max(1, Math.ceil((this.retryAt - Date.now()) / 1000));
      this._emit('reconnecting', `Reconnecting in ${secs}s`);
    };
    tick();
    this.tickTimer = setInterval(tick, 1000);
  }

  _retryNow() {
    if (this.stopped || this.ws) return;
    this.attempt = 0;
    this._connect();
  }

  _clearTimers() {
    clearTimeout(this.retryTimer);
    clearInterval(this.tickTimer);
    this.retryTimer = null;
    this.tickTimer = null;
  }

  _emit(state, label) {
    try { this.onState({ state, label }); } catch (err) { console.error(err); }
  }
}
