// Cadenza web player — playback.js
// The queue, the <audio id="player-audio"> element, radio mode and play reporting.
// Every start of a queue entry is a new "track instance"; each instance reports each kind
// at most once, as a play frame on the live socket (POST /api/plays when it is down): "play" at its first `playing` event, "complete" on
// `ended` (then next), "skip" from the skip button (with the position, then next), "like";
// each says where the entry came from (`source`: browse, up_next, radio or queue).
// Radio: GET /api/tracks/{id}/similar fills the queue, then, whenever fewer than 3 tracks
// are left, the top "Up next" recommendations not already queued are appended (falling
// back to tracks similar to the current one). Audio comes from /audio/<id> (the session cookie).
// Missing track details are fetched with GET /api/tracks/{id} (cached).
// A track known to have no audio (`playable: false`, e.g. imported features only) is never
// loaded: playing it says so, radio and top-ups leave it out, and a queued one is passed
// over with a note. An entry whose playability is unknown (an "Up next" item) is looked up
// when its audio fails, so it reads "not playable", never "couldn't play".
// Dispatches 'change' whenever the queue, the current track, radio or like state changes.

import { api, audioUrl, getTrack, peekTrack, rememberTracks } from './api.js';
import { toast } from './dom.js';

const LOW_WATER = 3;     // radio tops the queue up when fewer upcoming tracks than this
const TOP_UP = 5;        // tracks appended per top-up
const KEEP_HISTORY = 30; // played entries kept above the current one
const MAX_ERRORS = 3;    // consecutive unplayable tracks before giving up

let uidSeq = 0;

// Where an entry came from, as plays report it (schemas.events.PlaySource): what the
// gateway and the recommender count acceptance of recommendations by.
const WIRE_SOURCE = { upnext: 'up_next', radio: 'radio', queue: 'queue' };
export function wireSource(source) {
  return WIRE_SOURCE[source] || 'browse';
}

function normalize(t) {
  return {
    track_id: Number(t.track_id),
    title: typeof t.title === 'string' ? t.title : '',
    artist: typeof t.artist === 'string' ? t.artist : '',
    album: typeof t.album === 'string' ? t.album : '',
    genre_top: typeof t.genre_top === 'string' ? t.genre_top : null,
    duration_s: Number.isFinite(Number(t.duration_s)) && Number(t.duration_s) > 0 ? Number(t.duration_s) : null,
    audio_url: typeof t.audio_url === 'string' ? t.audio_url : null,
    playable: typeof t.playable === 'boolean' ? t.playable : null, // null: not known yet
  };
}

export function displayTitle(track) {
  return track.title || `Track ${track.track_id}`;
}

/** false when the track (or what the track cache knows of it) has no audio; else true. */
export function isPlayable(track) {
  if (track?.playable === false) return false;
  if (track?.playable === true) return true;
  return peekTrack(Number(track?.track_id))?.playable !== false;
}

function notPlayable(track) {
  toast(`“${displayTitle(track)}” has no audio on this server (features only), so it can't be played.`);
}

export class Playback extends EventTarget {
  /** getUpNext(): the latest Recommendation shown in "Up next for you" (or null). */
  constructor(audio, { getUpNext }) {
    super();
    this.audio = audio;
    this.getUpNext = getUpNext;
    this.sendPlay = null; // (data) => Promise of the ack, or null: set by the app (live socket)
    this.queue = [];      // [{uid, track, source}]
    this.index = -1;      // position of the current entry in queue (-1: none yet)
    this.instance = null; // {id, uid, trackId, sent: Set<kind>, liked}
    this.radio = null;    // {id, seed, loading}
    this.errors = 0;
    this._instSeq = 0;
    this._radioSeq = 0;
    this._topping = null;

    audio.addEventListener('playing', () => this._onPlaying());
    audio.addEventListener('ended', () => this._onEnded());
    audio.addEventListener('error', () => this._onError());
    this._setupMediaSession();
  }

  get current() {
    return this.index >= 0 ? this.queue[this.index] || null : null;
  }

  get upcomingCount() {
    return Math.max(0, this.queue.length - this.index - 1);
  }

  // ------------------------------------------------------------ transport

  /** Play a track right now: it goes after the current entry, the rest of the queue stays. */
  playNow(track, source = 'browse') {
    const t = normalize(track);
    if (!isPlayable(t)) {
      notPlayable(t);
      return;
    }
    const cur = this.current;
    if (cur && this.instance && cur.track.track_id === t.track_id) {
      if (this.audio.ended || this.audio.error) this._load(this.index);
      else if (this.audio.paused) this._play();
      return;
    }
    this.queue.splice(this.index + 1, 0, this._entry(t, source));
    this._load(this.index + 1);
  }

  toggle() {
    if (!this.instance) {
      if (this.upcomingCount > 0) this._load(this.index + 1);
      else toast('Pick a track to play.');
      return;
    }
    if (this.audio.ended || this.audio.error) {
      this._load(this.index); // replaying is a new listen
      return;
    }
    if (this.audio.paused) this._play();
    else this.audio.pause();
  }

  async next({ auto = false, stopAtEnd = false } = {}) {
    if (this.upcomingCount > 0) {
      this._load(this.index + 1);
      return true;
    }
    if (this.radio) {
      const inst = this.instance;
      await this.topUp();
      if (this.instance !== inst) return false;
      if (this.upcomingCount > 0) {
        this._load(this.index + 1);
        return true;
      }
    }
    if (stopAtEnd && !this.audio.paused) this.audio.pause();
    toast(this.radio
      ? 'Nothing more on this radio yet — keep listening and Cadenza will find more.'
      : auto ? 'End of the queue.' : 'Nothing else in the queue. Start a radio to keep the music going.');
    this._emit();
    return false;
  }

  prev() {
    if (!this.instance) return;
    if (this.audio.ended) {
      this._load(this.index);
    } else if (this.audio.currentTime > 3 || this.index <= 0) {
      this.audio.currentTime = 0;
    } else {
      this._load(this.index - 1);
    }
  }

  seek(seconds) {
    if (!this.instance) return;
    const dur = this.duration;
    let s = Math.max(0, Number(seconds) || 0);
    if (dur) s = Math.min(s, Math.max(0, dur - 0.5)); // seeking never fakes a "complete"
    this.audio.currentTime = s;
  }

  seekBy(delta) {
    this.seek((this.audio.currentTime || 0) + delta);
  }

  get duration() {
    const d = this.audio.duration;
    if (Number.isFinite(d) && d > 0) return d;
    return this.current?.track.duration_s || 0;
  }

  // ------------------------------------------------------------ feedback

  /** Skip: POST "skip" with the current position (once per instance), then go next. */
  skip() {
    const inst = this.instance;
    if (!inst) return;
    if (!inst.sent.has('skip') && !inst.sent.has('complete')) {
      inst.sent.add('skip');
      this._report(inst, 'skip', this.audio.currentTime);
    }
    this.next({ stopAtEnd: true });
  }

  like() {
    const inst = this.instance;
    if (!inst) {
      toast('Play a track first, then like it.');
      return;
    }
    if (inst.sent.has('like')) {
      toast('You already liked this one.');
      return;
    }
    inst.sent.add('like');
    inst.liked = true;
    this._emit();
    this._report(inst, 'like', this.audio.currentTime).then((ok) => {
      if (ok) toast('Liked — Cadenza will play more like this.', 'ok');
    });
  }

  // ------------------------------------------------------------ queue editing

  /** Append to the queue; returns false if it is already waiting there. */
  enqueue(track, source = 'browse') {
    const t = normalize(track);
    if (!isPlayable(t)) return false;
    if (this.queue.slice(this.index + 1).some((e) => e.track.track_id === t.track_id)) return false;
    // Added by hand from a browse list: played later, it came from the listener's queue.
    this.queue.push(this._entry(t, source === 'browse' ? 'queue' : source));
    this._emit();
    return true;
  }

  jumpTo(uid) {
    const i = this.queue.findIndex((e) => e.uid === uid);
    if (i >= 0) this._load(i);
  }

  remove(uid) {
    const i = this.queue.findIndex((e) => e.uid === uid);
    if (i < 0 || i === this.index) return;
    this.queue.splice(i, 1);
    if (i < this.index) this.index -= 1;
    this._emit();
  }

  clearUpcoming() {
    this.queue.length = this.index + 1;
    this._emit();
  }

  // ------------------------------------------------------------ radio

  async startRadio(track) {
    const t = normalize(track);
    const radio = { id: ++this._radioSeq, seed: t, loading: true };
    this.radio = radio;
    const cur = this.current;
    const seedPlays = isPlayable(t);
    if (!seedPlays) {
      // The seed has no audio: the radio is its similar tracks, starting with the first.
      this.queue = cur && this.instance ? [cur] : [];
      this.index = this.queue.length - 1;
      this._emit();
    } else if (cur && this.instance && cur.track.track_id === t.track_id && !this.audio.ended) {
      this.queue = [cur];
      this.index = 0;
      this._emit();
      if (this.audio.paused) this._play();
    } else {
      this.queue = [this._entry(t, 'radio')];
      this.index = -1;
      this._load(0);
    }
    try {
      const res = await api.similar(t.track_id, 20);
      if (this.radio !== radio) return;
      const items = Array.isArray(res?.items) ? res.items : [];
      rememberTracks(items);
      const added = this._append(items, 'radio');
      if (!seedPlays && added) this._load(this.index + 1);
      toast(added
        ? `Radio from “${displayTitle(t)}”: ${added} similar tracks queued.`
        : seedPlays
          ? `Radio from “${displayTitle(t)}”: following your recommendations.`
          : `Radio from “${displayTitle(t)}”: none of its similar tracks has audio yet; following your recommendations.`, 'ok');
    } catch (err) {
      if (this.radio !== radio || err.status === 401) return;
      toast(`Couldn't load similar tracks: ${err.message}`, 'error');
    } finally {
      if (this.radio === radio) {
        radio.loading = false;
        this._emit();
        this.topUp();
      }
    }
  }

  stopRadio() {
    this.radio = null;
    this._emit();
  }

  /** In radio mode, keep at least LOW_WATER tracks queued after the current one. */
  topUp() {
    if (!this.radio || this.radio.loading) return Promise.resolve();
    if (this._topping) return this._topping;
    const radio = this.radio;
    const run = (async () => {
      try {
        const upcoming = this.upcomingCount;
        if (upcoming >= LOW_WATER) return;
        const rec = this.getUpNext();
        let added = this._append(Array.isArray(rec?.items) ? rec.items : [], 'upnext', TOP_UP);
        const cur = this.current;
        if (!added && upcoming === 0 && cur) {
          const res = await api.similar(cur.track.track_id, 20);
          if (this.radio !== radio) return;
          const items = Array.isArray(res?.items) ? res.items : [];
          rememberTracks(items);
          added = this._append(items, 'radio', TOP_UP);
        }
      } catch (err) {
        if (err.status !== 401) console.warn('radio top-up failed:', err);
      }
    })();
    // Cleared after the assignment (the body may finish synchronously, before it).
    this._topping = run;
    run.finally(() => { if (this._topping === run) this._topping = null; });
    return run;
  }

  /** Forget everything (sign-out). */
  reset() {
    this.instance = null;
    this.radio = null;
    this.queue = [];
    this.index = -1;
    this.errors = 0;
    this.audio.pause();
    this.audio.removeAttribute('src');
    this.audio.load();
    this._emit();
  }

  // ------------------------------------------------------------ internals

  _entry(track, source) {
    return { uid: ++uidSeq, track: normalize(track), source };
  }

  /** Append tracks not already anywhere in the queue; returns how many were added. */
  _append(items, source, max = Infinity) {
    const have = new Set(this.queue.map((e) => e.track.track_id));
    let added = 0;
    for (const item of items) {
      const id = Number(item?.track_id);
      if (!Number.isFinite(id) || have.has(id) || !isPlayable(item)) continue;
      this.queue.push(this._entry(item, source));
      have.add(id);
      added += 1;
      if (added >= max) break;
    }
    if (added) this._emit();
    return added;
  }

  _load(i) {
    const e = this.queue[i];
    if (!e) return;
    if (!isPlayable(e.track)) {
      this._passOver(i);
      return;
    }
    this.index = i;
    if (this.index > KEEP_HISTORY) {
      const drop = this.index - KEEP_HISTORY;
      this.queue.splice(0, drop);
      this.index -= drop;
    }
    this.instance = { id: ++this._instSeq, uid: e.uid, trackId: e.track.track_id, source: wireSource(e.source), sent: new Set(), liked: false };
    this.audio.src = audioUrl(e.track);
    this._emit();
    this._play();
    this._completeDetails(e);
    this.topUp();
  }

  _play() {
    const p = this.audio.play();
    if (p && typeof p.catch === 'function') {
      p.catch((err) => {
        if (err && err.name === 'NotAllowedError') toast('Press play to start listening.');
        this._emit();
      });
    }
  }

  /** Entries made from recommendations lack album/duration (and maybe the title). */
  _completeDetails(e) {
    if (e.track.title && e.track.duration_s) {
      this._mediaMetadata();
      return;
    }
    getTrack(e.track.track_id).then((full) => {
      const t = normalize(full);
      for (const key of Object.keys(t)) if (t[key] != null && t[key] !== '') e.track[key] = t[key];
      this._emit();
      if (this.current === e) this._mediaMetadata();
    }).catch(() => { /* keep what we have */ });
    this._mediaMetadata();
  }

  async _report(inst, kind, position) {
    const pos = Number.isFinite(position) && position > 0 ? Math.round(position * 1000) / 1000 : 0;
    const eventId = newEventId();
    try {
      let res = null;
      const sent = this.sendPlay ? this.sendPlay({ track_id: Number(inst.trackId), kind, position_s: pos, event_id: eventId, source: inst.source }) : null;
      if (sent) {
        try {
          res = await sent;
        } catch (err) {
          if (err.status && err.status < 500) throw err; // refused: posting would be refused too
          res = null; // the socket went away: post it, the same event id
        }
      }
      if (!res) res = await api.play(inst.trackId, kind, pos, eventId, inst.source);
      this.dispatchEvent(new CustomEvent('reported', { detail: { kind, trackId: inst.trackId, eventId: res?.event_id } }));
      return true;
    } catch (err) {
      if (err.status !== 401) toast(`Couldn't send your ${kind}: ${err.message}`, 'error');
      return false;
    }
  }

  _onPlaying() {
    this.errors = 0;
    const inst = this.instance;
    if (inst && !inst.sent.has('play')) {
      inst.sent.add('play');
      this._report(inst, 'play', this.audio.currentTime);
    }
  }

  _onEnded() {
    const inst = this.instance;
    if (!inst) return;
    if (!inst.sent.has('complete') && !inst.sent.has('skip')) {
      inst.sent.add('complete');
      const d = this.audio.duration;
      this._report(inst, 'complete', Number.isFinite(d) ? d : this.audio.currentTime);
    }
    this.next({ auto: true });
  }

  /** Take the entry at ``i`` (known to have no audio) out of the queue, say so, go on. */
  _passOver(i) {
    const [e] = this.queue.splice(i, 1);
    notPlayable(e.track);
    if (i <= this.index) {
      this.index -= 1;
      if (i === this.index + 1) this.instance = null; // it was the current entry
    }
    if (i > this.index && this.queue[i]) this._load(i);
    else {
      this._emit();
      this.topUp();
    }
  }

  _onError() {
    const inst = this.instance;
    if (!inst || !this.audio.getAttribute('src')) return;
    const e = this.current;
    if (e && e.track.playable !== true) {
      // Known, or (an "Up next" item) looked up, to have no audio: say that, not "broken".
      const lookup = e.track.playable === false ? Promise.resolve(e.track) : getTrack(e.track.track_id);
      lookup.then((full) => {
        if (this.instance !== inst) return;
        e.track.playable = full?.playable !== false;
        if (e.track.playable) {
          this._onError();
          return;
        }
        this.audio.removeAttribute('src');
        this.audio.load();
        this.instance = null;
        this._passOver(this.index);
      }).catch(() => {
        if (this.instance !== inst) return;
        e.track.playable = true;
        this._onError();
      });
      return;
    }
    const title = e ? displayTitle(e.track) : `track ${inst.trackId}`;
    this.errors += 1;
    api.me().catch(() => { /* a 401 here signs the listener out; other errors: the file itself */ });
    this._emit();
    if (this.errors >= MAX_ERRORS) {
      toast(`Couldn't play “${title}”. Several tracks in a row failed, so playback stopped.`, 'error');
      return;
    }
    toast(`Couldn't play “${title}” — moving on to the next track.`, 'error');
    setTimeout(() => {
      if (this.instance === inst) this.next({ auto: true });
    }, 1200);
  }

  _emit() {
    this.dispatchEvent(new Event('change'));
  }

  _setupMediaSession() {
    if (!('mediaSession' in navigator)) return;
    const actions = {
      play: () => this.toggle(),
      pause: () => this.audio.pause(),
      previoustrack: () => this.prev(),
      nexttrack: () => this.next(),
      seekto: (d) => this.seek(d.seekTime),
    };
    for (const [action, fn] of Object.entries(actions)) {
      try { navigator.mediaSession.setActionHandler(action, fn); } catch { /* unsupported action */ }
    }
  }

  _mediaMetadata() {
    const e = this.current;
    if (!e || !('mediaSession' in navigator) || typeof window.MediaMetadata !== 'function') return;
    try {
      navigator.mediaSession.metadata = new window.MediaMetadata({
        title: displayTitle(e.track), artist: e.track.artist, album: e.track.album,
      });
    } catch { /* ignore */ }
  }
}

/** A random (version 4) UUID; crypto.randomUUID needs a secure context, this does not. */
function newEventId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
