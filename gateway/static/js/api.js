// Cadenza web player — api.js
// The REST client: keeps the token (localStorage "cadenza.token"), sends
// "Authorization: Bearer <token>", turns error bodies {"error","field"} into ApiError,
// and on any 401 forgets the token and calls the handler set with onUnauthorized().
// Endpoints: GET /api/config, POST /api/signin (demo), POST /api/login (name + password),
// POST|DELETE /api/session, GET /api/me,
// GET /api/tracks, GET /api/tracks/{id}, GET /api/tracks/{id}/similar, GET /api/genres,
// POST /api/plays, GET /api/recommendations, GET /api/me/recent. Tokens never go in a URL (URLs end up in
// logs and history): <audio> (no headers) is authorised by the HttpOnly cookie that
// POST /api/session sets from the Bearer token, and the websocket carries the token in
// its subprotocol list (wsProtocols: "cadenza.v1", "cadenza.token.<token>").

const TOKEN_KEY = 'cadenza.token';
let memoryToken = null; // fallback when localStorage is unavailable (private mode, disabled storage)

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return memoryToken;
  }
}

export function setToken(token) {
  memoryToken = token;
  try { localStorage.setItem(TOKEN_KEY, token); } catch { /* memory only */ }
}

export function clearToken() {
  memoryToken = null;
  try { localStorage.removeItem(TOKEN_KEY); } catch { /* nothing stored */ }
}

export class ApiError extends Error {
  constructor(status, message, { field = null, body = null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status; // 0: the request never got an HTTP answer
    this.field = field;
    this.body = body;
  }
}

let unauthorizedHandler = () => {};
/** fn() runs whenever an authenticated call is refused with 401 (the token is already forgotten). */
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

function unauthorized() {
  try { unauthorizedHandler(); } catch (err) { console.error(err); }
}

export async function request(path, { method = 'GET', body, auth = true, signal, timeoutMs = 15000 } = {}) {
  const headers = { Accept: 'application/json' };
  const token = auth ? getToken() : null;
  if (auth) {
    if (!token) {
      unauthorized();
      throw new ApiError(401, 'You are not signed in.');
    }
    headers.Authorization = `Bearer ${token}`;
  }
  if (body !== undefined) headers['Content-Type'] = 'application/json';

  const ctrl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; ctrl.abort(); }, timeoutMs);
  const onAbort = () => ctrl.abort();
  if (signal) {
    if (signal.aborted) ctrl.abort();
    else signal.addEventListener('abort', onAbort, { once: true });
  }

  let res;
  let text = '';
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctrl.signal,
      cache: 'no-store',
      credentials: 'same-origin',
    });
    text = await res.text();
  } catch (err) {
    if (signal?.aborted) throw new DOMException('aborted', 'AbortError');
    if (timedOut) throw new ApiError(0, 'The server took too long to answer.');
    throw new ApiError(0, 'Cannot reach the Cadenza server.');
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }

  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  const serverMessage = data && typeof data === 'object'
    ? (typeof data.error === 'string' ? data.error : typeof data.detail === 'string' ? data.detail : null)
    : null;

  if (res.status === 401 && auth) {
    // Only forget the token this request used (another sign-in may have replaced it meanwhile).
    if (getToken() === token) clearToken();
    unauthorized();
    throw new ApiError(401, serverMessage || 'Your session has expired.');
  }
  if (!res.ok) {
    throw new ApiError(res.status, serverMessage || `${res.status} ${res.statusText || 'error'}`.trim(), {
      field: data && typeof data.field === 'string' ? data.field : null,
      body: data,
    });
  }
  return data;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== '' && value != null) search.set(key, String(value));
  }
  return search.toString();
}

const trackId = (id) => encodeURIComponent(String(Number(id)));

export const api = {
  config: () => request('/api/config', { auth: false }),
  signin: (name) => request('/api/signin', { method: 'POST', body: { name }, auth: false }),
  /** Password sign-in: 401 wrong name or password, 429 locked out (Retry-After), 403 disabled. */
  login: (name, password) => request('/api/login', { method: 'POST', body: { name, password }, auth: false }),
  me: () => request('/api/me'),
  /** Who the token is, and the same token set as the cookie <audio> requests carry. */
  session: () => request('/api/session', { method: 'POST' }),
  /** Forget the cookie (sign-out); needs no token. */
  endSession: () => request('/api/session', { method: 'DELETE', auth: false }),
  tracks: ({ q = '', genre = '', artist = '', page = 1, perPage = 50 } = {}, signal) =>
    request(`/api/tracks?${query({ q, genre, artist, page, per_page: perPage })}`, { signal }),
  track: (id) => request(`/api/tracks/${trackId(id)}`),
  similar: (id, limit = 20) => request(`/api/tracks/${trackId(id)}/similar?${query({ limit })}`),
  genres: () => request('/api/genres'),
  play: (id, kind, positionS, eventId, source) => request('/api/plays', {
    method: 'POST',
    body: { track_id: Number(id), kind, position_s: positionS, ...(eventId ? { event_id: eventId } : {}), ...(source ? { source } : {}) },
  }),
  recommendations: () => request('/api/recommendations'),
  /** The listener's latest play of each track, newest first: {items: [Track + played_at], total, limit}. */
  recent: (limit = 50, signal) => request(`/api/me/recent?${query({ limit })}`, { signal }),
};

// ---------------------------------------------------------------- track cache

const known = new Map();   // track_id -> full Track (synchronous look-ups for rendering)
const pending = new Map(); // track_id -> Promise<Track>

/** Remember full Track objects received from any listing. */
export function rememberTracks(items) {
  for (const t of items || []) {
    if (t && Number.isFinite(Number(t.track_id)) && typeof t.title === 'string') known.set(Number(t.track_id), t);
  }
}

export function peekTrack(id) {
  return known.get(Number(id)) || null;
}

/** The Track with this id, from the cache or GET /api/tracks/{id} (one request per id). */
export function getTrack(id) {
  const key = Number(id);
  if (known.has(key)) return Promise.resolve(known.get(key));
  let p = pending.get(key);
  if (!p) {
    p = api.track(key).then((t) => {
      known.set(key, t);
      return t;
    }).finally(() => pending.delete(key));
    pending.set(key, p);
  }
  return p;
}

// ---------------------------------------------------------------- URLs without headers

/** Same-origin audio URL; the session cookie authorises it (the <audio> element can't send headers). */
export function audioUrl(track) {
  const fallback = `/audio/${trackId(track.track_id)}`;
  let url;
  try {
    url = new URL(track.audio_url || fallback, window.location.origin);
    if (url.origin !== window.location.origin) url = new URL(fallback, window.location.origin); // same origin only
  } catch {
    url = new URL(fallback, window.location.origin);
  }
  url.searchParams.delete('token');
  return url.pathname + url.search;
}

export function wsUrl() {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${window.location.host}/ws`;
}

/** The websocket subprotocols: the one the gateway speaks, then the token (never echoed back). */
export function wsProtocols() {
  return ['cadenza.v1', `cadenza.token.${getToken() || ''}`];
}
