// Cadenza web player — player.js (entry module, loaded by index.html)
// Boot, sign-in and the wiring between the modules in ./js/: the catalogue (browse.js), the
// "Recently played" view (recent.js; the sidebar's navigation switches the main views), the
// queue and audio (playback.js), the live panels (panels.js), the websocket
// (live.js) and the bottom player bar / keyboard shortcuts (here).
// Endpoints: GET /api/config, POST /api/signin (demo: a name), POST /api/login (a name and
// password, when the server has accounts), POST|DELETE /api/session (the cookie that
// lets <audio> play), GET /api/me, GET /api/recommendations (the others through the
// modules), websocket /ws (token in the subprotocols, never in a URL).
// Any 401 (REST) or close 4401 (websocket) forgets the token and shows the sign-in screen.

import { api, getToken, setToken, clearToken, onUnauthorized, wsUrl, wsProtocols } from './js/api.js';
import { fillIcons, setIcon, toast, formatTime, setBusy } from './js/dom.js';
import { LiveConnection } from './js/live.js';
import { Playback, displayTitle, isPlayable } from './js/playback.js';
import { Browse } from './js/browse.js';
import { Recent } from './js/recent.js';
import { UpNextPanel, TrendingPanel, QueuePanel } from './js/panels.js';

const $ = (id) => document.getElementById(id);
const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const ACCOUNT_RE = /^[A-Za-z0-9_.@-]{1,128}$/; // an account's name (schemas.tokens.USER_RE)
const VOLUME_KEY = 'cadenza.volume';

let config = { demo_signin: false, password_signin: false, version: '' };
let me = null;         // {user_id, expires}
let active = false;    // the app (not the sign-in screen) is showing
let expiryTimer = null;
let bootRetryTimer = null;

// ------------------------------------------------------------------ modules

const audio = $('player-audio');

const playback = new Playback(audio, { getUpNext: () => upNext.rec });

const upNext = new UpNextPanel($('upnext'), $('upnext-meta'), {
  onPlay: (item) => playback.playNow(item, 'upnext'),
  onQueue: (item) => queueTrack(item, 'upnext'),
  getUserId: () => me?.user_id || null,
});

const trending = new TrendingPanel($('trending'), $('trending-meta'), {
  onPlay: (track) => playback.playNow(track, 'trending'),
});

const queuePanel = new QueuePanel($('queue'), {
  count: $('queue-count'),
  radioBadge: $('radio-badge'),
  radioText: $('radio-text'),
  radioStop: $('radio-stop'),
  clearButton: $('queue-clear'),
}, playback);

const browse = new Browse({
  list: $('track-list'),
  chips: $('genres'),
  search: $('search'),
  more: $('load-more'),
  summary: $('browse-summary'),
  pills: $('filter-pills'),
}, {
  onPlay: (track) => playback.playNow(track, 'browse'),
  onQueue: (track) => queueTrack(track, 'browse'),
  onRadio: (track) => playback.startRadio(track),
});

const recent = new Recent({
  view: $('view-recent'),
  list: $('recent-list'),
  summary: $('recent-summary'),
  refresh: $('recent-refresh'),
}, {
  onPlay: (track) => playback.playNow(track, 'browse'),
  onQueue: (track) => queueTrack(track, 'browse'),
  onRadio: (track) => playback.startRadio(track),
  onArtist: (artist) => {
    showView('browse');
    browse.setFilter('artist', artist);
  },
});
// The history is written a micro-batch after a play reaches Kafka: look again a little later.
playback.addEventListener('reported', (ev) => {
  if (ev.detail?.kind === 'play') recent.playedSoon();
});

const live = new LiveConnection({
  url: wsUrl,
  protocols: wsProtocols,
  onMessage: onLiveMessage,
  onState: renderConnection,
  onUnauthorized: () => signOut('Your session has expired. Please sign in again.'),
  onSuspectAuth: checkSession,
});
// Plays go over the open socket; POST /api/plays when it is not connected.
playback.sendPlay = (data) => live.play(data);

function queueTrack(track, source) {
  const title = track.title || `Track ${track.track_id}`;
  if (!isPlayable(track)) toast(`“${title}” has no audio on this server, so it can't be queued.`);
  else if (playback.enqueue(track, source)) toast(`Added “${title}” to the queue.`, 'ok', 2200);
  else toast(`“${title}” is already in the queue.`);
}

// ------------------------------------------------------------------ live messages

function onLiveMessage(msg) {
  switch (msg.type) {
    case 'hello':
      if (msg.user_id && me && !me.user_id) me.user_id = String(msg.user_id);
      break;
    case 'recommendations':
      if (upNext.set(msg.data, { live: true })) playback.topUp();
      break;
    case 'trending':
      trending.add(msg.data);
      break;
    case 'batch': // several messages in one frame (the gateway's trending rounds)
      for (const inner of Array.isArray(msg.messages) ? msg.messages : []) {
        if (inner && inner.type !== 'batch') onLiveMessage(inner);
      }
      break;
    default:
      break; // unknown types are ignored (forward compatible)
  }
}

function renderConnection({ state, label }) {
  const el = $('conn-status');
  el.dataset.state = state;
  $('conn-label').textContent = label;
  el.title = state === 'connected'
    ? 'Live: recommendations update as you listen'
    : state === 'reconnecting' ? 'Connection to Cadenza lost, retrying' : 'Not connected';
}

let lastSessionCheck = 0;
function checkSession() {
  if (!active || Date.now() - lastSessionCheck < 20000) return;
  lastSessionCheck = Date.now();
  api.me().catch(() => { /* 401 signs out; anything else: keep retrying the socket */ });
}

// ------------------------------------------------------------------ player bar

const btnPlay = $('btn-play');
const btnLike = $('btn-like');
const seek = $('seek');
const volume = $('volume');
let seeking = false;

function renderNowPlaying() {
  const e = playback.current;
  const np = $('now-playing');
  const inst = playback.instance;
  if (e && inst) {
    np.dataset.trackId = String(e.track.track_id);
    $('np-title').textContent = displayTitle(e.track);
    $('np-artist').textContent = e.track.artist || '';
    $('np-context').textContent = playback.radio ? `Radio · ${displayTitle(playback.radio.seed)}` : sourceLabel(e.source);
    np.classList.remove('is-empty');
    document.title = `${displayTitle(e.track)}${e.track.artist ? ` — ${e.track.artist}` : ''} · Cadenza`;
  } else {
    np.removeAttribute('data-track-id');
    $('np-title').textContent = 'Nothing playing';
    $('np-artist').textContent = 'Pick a track, or start a radio';
    $('np-context').textContent = '';
    np.classList.add('is-empty');
    document.title = 'Cadenza';
  }
  const liked = Boolean(inst?.liked);
  btnLike.setAttribute('aria-pressed', String(liked));
  btnLike.classList.toggle('is-on', liked);
  setIcon(btnLike, liked ? 'heart' : 'heartOutline');
  for (const b of [btnLike, $('btn-skip'), $('btn-prev')]) b.disabled = !inst;
  $('btn-next').disabled = !inst && playback.upcomingCount === 0;
  seek.disabled = !inst;
  browse.markPlaying(e && inst ? e.track.track_id : null);
  recent.markPlaying(e && inst ? e.track.track_id : null);
  renderPlayState();
  renderTime();
}

function sourceLabel(source) {
  return { upnext: 'From Up next for you', trending: 'From Trending', radio: 'Radio' }[source] || '';
}

function renderPlayState() {
  const playing = !audio.paused && !audio.ended && Boolean(playback.instance);
  btnPlay.setAttribute('aria-label', playing ? 'Pause' : 'Play');
  btnPlay.title = playing ? 'Pause (space)' : 'Play (space)';
  btnPlay.dataset.state = playing ? 'playing' : 'paused';
  setIcon(btnPlay, playing ? 'pause' : 'play');
  $('app').classList.toggle('is-playing', playing);
}

function renderTime() {
  const dur = playback.instance ? playback.duration : 0;
  const cur = playback.instance ? audio.currentTime || 0 : 0;
  if (!seeking) {
    seek.value = dur ? String(Math.round((cur / dur) * 1000)) : '0';
    $('time-cur').textContent = formatTime(cur);
  }
  $('time-dur').textContent = formatTime(dur);
  seek.style.setProperty('--pct', `${Number(seek.value) / 10}%`);
  let buffered = 0;
  try {
    if (dur && audio.buffered.length) buffered = audio.buffered.end(audio.buffered.length - 1) / dur;
  } catch { /* no buffer info */ }
  seek.style.setProperty('--buf', `${Math.min(100, buffered * 100)}%`);
  seek.setAttribute('aria-valuetext', `${formatTime(cur)} of ${formatTime(dur)}`);
}

function renderVolume() {
  const v = audio.muted ? 0 : audio.volume;
  volume.value = String(v);
  volume.style.setProperty('--pct', `${v * 100}%`);
  const btn = $('btn-mute');
  setIcon(btn, v === 0 ? 'mute' : 'volume');
  btn.setAttribute('aria-label', audio.muted ? 'Unmute' : 'Mute');
  btn.setAttribute('aria-pressed', String(audio.muted));
}

function wirePlayerBar() {
  playback.addEventListener('change', () => {
    renderNowPlaying();
    queuePanel.render();
  });
  for (const ev of ['play', 'pause', 'ended', 'emptied']) audio.addEventListener(ev, renderPlayState);
  for (const ev of ['timeupdate', 'durationchange', 'loadedmetadata', 'progress', 'seeked', 'emptied']) audio.addEventListener(ev, renderTime);
  audio.addEventListener('waiting', () => btnPlay.classList.add('is-loading'));
  for (const ev of ['playing', 'canplay', 'pause', 'error', 'emptied']) audio.addEventListener(ev, () => btnPlay.classList.remove('is-loading'));
  audio.addEventListener('volumechange', () => {
    renderVolume();
    try { localStorage.setItem(VOLUME_KEY, String(audio.volume)); } catch { /* not persisted */ }
  });

  btnPlay.addEventListener('click', () => playback.toggle());
  $('btn-prev').addEventListener('click', () => playback.prev());
  $('btn-next').addEventListener('click', () => playback.next());
  $('btn-skip').addEventListener('click', () => playback.skip());
  btnLike.addEventListener('click', () => playback.like());
  $('btn-mute').addEventListener('click', () => {
    if (audio.muted || audio.volume === 0) {
      audio.muted = false;
      if (audio.volume === 0) audio.volume = 0.5;
    } else {
      audio.muted = true;
    }
  });
  volume.addEventListener('input', () => {
    audio.muted = false;
    audio.volume = Math.min(1, Math.max(0, Number(volume.value)));
  });
  seek.addEventListener('input', () => {
    seeking = true;
    const dur = playback.duration;
    $('time-cur').textContent = formatTime((Number(seek.value) / 1000) * dur);
    seek.style.setProperty('--pct', `${Number(seek.value) / 10}%`);
  });
  seek.addEventListener('change', () => {
    seeking = false;
    playback.seek((Number(seek.value) / 1000) * playback.duration);
    renderTime();
  });

  let saved = NaN;
  try { saved = Number.parseFloat(localStorage.getItem(VOLUME_KEY)); } catch { /* default */ }
  audio.volume = Number.isFinite(saved) ? Math.min(1, Math.max(0, saved)) : 0.8;
  renderVolume();
  renderNowPlaying();
}

function wireKeyboard() {
  document.addEventListener('keydown', (ev) => {
    if (!active || ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const t = ev.target;
    const tag = t?.tagName;
    const typing = t && (t.isContentEditable || tag === 'TEXTAREA' || tag === 'SELECT'
      || (tag === 'INPUT' && !['range', 'checkbox', 'radio', 'button'].includes(t.type)));
    if (typing) return;
    if (ev.key === ' ' || ev.code === 'Space') {
      ev.preventDefault();
      playback.toggle();
    } else if (ev.key === 'ArrowLeft' || ev.key === 'ArrowRight') {
      if (tag === 'INPUT' && t.type === 'range') return; // the slider handles its own arrows
      ev.preventDefault();
      playback.seekBy((ev.key === 'ArrowLeft' ? -1 : 1) * (ev.shiftKey ? 15 : 5));
    } else if (ev.key === '/') {
      ev.preventDefault();
      $('search').focus();
    }
  });
}

// ------------------------------------------------------------------ main views

const VIEWS = { browse: { view: 'view-browse', nav: 'nav-browse' }, recent: { view: 'view-recent', nav: 'nav-recent' } };

/** Show one of the main views (browse, recent), mark its link as the current page; the
 * "Recently played" view loads afresh each time it is opened. focus: move focus to its heading. */
function showView(name, { focus = false } = {}) {
  for (const [key, { view, nav }] of Object.entries(VIEWS)) {
    const shown = key === name;
    $(view).hidden = !shown;
    $(nav).classList.toggle('is-active', shown);
    if (shown) $(nav).setAttribute('aria-current', 'page');
    else $(nav).removeAttribute('aria-current');
  }
  $('main').scrollTop = 0;
  if (name === 'recent') recent.load();
  if (focus) $(name === 'recent' ? 'recent-title' : 'browse-title').focus();
}

// ------------------------------------------------------------------ sign-in

function showScreen(name) {
  $('boot').hidden = name !== 'boot';
  $('signin').hidden = name !== 'signin';
  $('app').hidden = name !== 'app';
}

function showSignin(message) {
  active = false;
  showScreen('signin');
  const demo = Boolean(config.demo_signin);
  const password = Boolean(config.password_signin);
  const form = demo || password;
  $('signin-form').hidden = !form;
  $('signin-password-row').hidden = !password;
  $('signin-password-hint').hidden = !(password && demo);
  $('signin-hint').hidden = password;
  $('signin-password').value = '';
  $('signin-nodemo').hidden = form;
  const tokenBox = $('signin-token-box');
  tokenBox.classList.toggle('is-primary', !form);
  if (!form) tokenBox.open = true;
  const msg = $('signin-message');
  msg.hidden = !message;
  msg.textContent = message || '';
  fieldError('signin-error', '');
  fieldError('token-error', '');
  $('signin-version').textContent = config.version ? `Cadenza ${config.version}` : '';
  (form ? $('signin-name') : $('signin-token')).focus();
}

function fieldError(id, text) {
  const el = $(id);
  el.textContent = text;
  el.hidden = !text;
  const input = id === 'signin-error' ? $('signin-name') : $('signin-token');
  if (text) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

async function onSigninSubmit(ev) {
  ev.preventDefault();
  const name = $('signin-name').value.trim();
  const password = config.password_signin ? $('signin-password').value : '';
  // With a password (or no demo sign-in): the account's sign-in; else the demo's, by name only.
  const withPassword = Boolean(config.password_signin) && (Boolean(password) || !config.demo_signin);
  if (withPassword ? !ACCOUNT_RE.test(name) : !NAME_RE.test(name)) {
    fieldError('signin-error', !name
      ? 'Enter a name to sign in.'
      : withPassword ? 'Wrong name or password.' : 'Use 1–64 characters: letters, digits, “_”, “-” or “.”.');
    return;
  }
  if (withPassword && !password) {
    fieldError('signin-error', 'Enter your password.');
    $('signin-password').focus();
    return;
  }
  fieldError('signin-error', '');
  const button = $('signin-button');
  setBusy(button, true);
  try {
    const res = withPassword ? await api.login(name, password) : await api.signin(name);
    $('signin-password').value = '';
    if (!res || typeof res.token !== 'string' || !res.token) throw new Error('The server sent no token.');
    setToken(res.token);
    enterApp({ user_id: String(res.user_id ?? name), expires: res.expires });
  } catch (err) {
    if (err.status === 404 && !withPassword) {
      config.demo_signin = false;
      showSignin('Open sign-in is turned off on this server.');
    } else if (err.status === 401 && withPassword) {
      fieldError('signin-error', 'Wrong name or password.');
    } else if (err.status === 429) {
      // Locked out for a while: the server says how long (Retry-After).
      const text = err.message || 'too many failed sign-ins: try again later';
      fieldError('signin-error', `${text.charAt(0).toUpperCase()}${text.slice(1)}.`);
    } else {
      fieldError('signin-error', err.message || 'Sign-in failed.');
    }
  } finally {
    setBusy(button, false);
  }
}

async function onTokenSubmit(ev) {
  ev.preventDefault();
  const token = $('signin-token').value.trim();
  if (!token) {
    fieldError('token-error', 'Paste the token your operator gave you.');
    return;
  }
  fieldError('token-error', '');
  const button = $('signin-token-button');
  setBusy(button, true);
  setToken(token);
  try {
    const who = await api.session();
    $('signin-token').value = '';
    enterApp(who);
  } catch (err) {
    if (err.status === 401) fieldError('token-error', 'That token was not accepted: it may be mistyped or expired.');
    else {
      clearToken();
      fieldError('token-error', err.message || 'Could not check the token.');
    }
  } finally {
    setBusy(button, false);
  }
}

// ------------------------------------------------------------------ session

function enterApp(who) {
  me = { user_id: who?.user_id ? String(who.user_id) : '', expires: who?.expires || null };
  active = true;
  showScreen('app');
  $('user-name').textContent = me.user_id || 'listener';
  $('user-avatar').textContent = (me.user_id || '?').slice(0, 1).toUpperCase();
  $('app-version').textContent = config.version ? `v${config.version}` : '';
  live.start();
  showView(window.location.hash === '#recent' ? 'recent' : 'browse');
  browse.load(true);
  browse.loadGenres();
  api.recommendations()
    .then((rec) => { if (active) upNext.set(rec, { live: false }); })
    .catch((err) => { if (err.status !== 401) toast(`Couldn't load your recommendations: ${err.message}`, 'error'); });
  scheduleExpiry();
}

function scheduleExpiry() {
  clearTimeout(expiryTimer);
  const at = Date.parse(me?.expires || '');
  if (!Number.isFinite(at)) return;
  const ms = Math.min(2 ** 31 - 1, Math.max(1000, at - Date.now() + 1000));
  expiryTimer = setTimeout(() => { if (active) api.me().catch(() => {}); }, ms); // a 401 signs out
}

function signOut(message) {
  active = false;
  clearTimeout(expiryTimer);
  live.stop();
  playback.reset();
  upNext.clear();
  trending.clear();
  browse.reset();
  recent.reset();
  clearToken();
  api.endSession().catch(() => { /* the cookie then simply expires with its token */ });
  me = null;
  showSignin(message);
}

// ------------------------------------------------------------------ boot

async function boot() {
  clearTimeout(bootRetryTimer);
  showScreen('boot');
  $('boot-message').textContent = 'Loading Cadenza…';
  $('boot-retry').hidden = true;
  try {
    const cfg = await api.config();
    config = {
      demo_signin: Boolean(cfg?.demo_signin),
      password_signin: Boolean(cfg?.password_signin),
      version: typeof cfg?.version === 'string' ? cfg.version : '',
    };
  } catch (err) {
    return bootFailed(err);
  }
  if (!getToken()) return showSignin();
  try {
    enterApp(await api.session());
  } catch (err) {
    if (err.status === 401) showSignin('Your session has expired. Please sign in again.');
    else bootFailed(err);
  }
}

function bootFailed(err) {
  showScreen('boot');
  $('boot-message').textContent = `Can't reach Cadenza (${err.message}). Retrying in a few seconds…`;
  $('boot-retry').hidden = false;
  bootRetryTimer = setTimeout(boot, 5000);
}

function init() {
  fillIcons(document);
  wirePlayerBar();
  wireKeyboard();
  onUnauthorized(() => {
    if (active) signOut('Your session has expired. Please sign in again.');
  });
  $('signin-form').addEventListener('submit', onSigninSubmit);
  $('token-form').addEventListener('submit', onTokenSubmit);
  $('signin-name').addEventListener('input', () => fieldError('signin-error', ''));
  $('signin-password').addEventListener('input', () => fieldError('signin-error', ''));
  $('btn-signout').addEventListener('click', () => signOut('You signed out.'));
  $('boot-retry').addEventListener('click', boot);
  $('nav-browse').addEventListener('click', (ev) => {
    ev.preventDefault();
    if (window.location.hash) history.replaceState(null, '', window.location.pathname + window.location.search);
    showView('browse', { focus: true });
    browse.clearFilters();
  });
  $('nav-recent').addEventListener('click', (ev) => {
    ev.preventDefault();
    history.replaceState(null, '', '#recent');
    showView('recent', { focus: true });
  });
  // Searching shows the catalogue, whichever view is open.
  $('search').addEventListener('input', () => { if ($('view-browse').hidden) showView('browse'); });
  boot();
}

init();

// Exposed for debugging from the console only.
window.cadenza = Object.freeze({ playback, live });
