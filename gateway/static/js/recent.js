// Cadenza web player — recent.js
// The "Recently played" view (#view-recent): the listener's latest play of each track, newest
// first, as catalogue rows (browse.js trackRow / rowAction: play, + queue, radio, the artist's
// tracks) showing when each was played. Endpoint: GET /api/me/recent?limit=. Loaded when the
// view is opened (load()), and again a few seconds after each of the listener's own plays is
// acknowledged (playedSoon()): the history is written by Spark micro-batches, so a play shows
// up within a few seconds, which the view says. Stale responses are dropped (aborted).

import { api, rememberTracks } from './api.js';
import { h } from './dom.js';
import { rowAction, trackRow } from './browse.js';

const LIMIT = 50;
// After an acknowledged play: look again once the history has had time to be written.
const AFTER_PLAY_MS = [4000, 12000];

function played(iso) {
  const at = Date.parse(iso || '');
  if (!Number.isFinite(at)) return null;
  const s = Math.max(0, Math.round((Date.now() - at) / 1000));
  const label = s < 60 ? 'just now'
    : s < 3600 ? `${Math.floor(s / 60)} min ago`
      : s < 86400 ? `${Math.floor(s / 3600)} h ago`
        : new Date(at).toLocaleDateString(undefined, { day: 'numeric', month: 'short', year: 'numeric' });
  return { iso, label, title: `Played ${new Date(at).toLocaleString()}` };
}

export class Recent {
  constructor(els, handlers) {
    this.els = els; // {view, list, summary, refresh}
    this.byId = new Map();
    this.seq = 0;
    this.ctrl = null;
    this.timers = [];
    this.playingId = null;
    els.list.addEventListener('click', (ev) => rowAction(ev, this.byId, handlers));
    els.refresh.addEventListener('click', () => this.load());
  }

  get visible() {
    return !this.els.view.hidden;
  }

  /** Fetch and show the history (the rows stay until the answer comes). */
  async load() {
    const seq = ++this.seq;
    this.ctrl?.abort();
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    const { list, summary, refresh } = this.els;
    list.setAttribute('aria-busy', 'true');
    refresh.disabled = true;
    if (!this.byId.size) summary.textContent = 'Loading your recently played tracks…';
    try {
      const res = await api.recent(LIMIT, ctrl.signal);
      if (seq !== this.seq) return;
      const items = (Array.isArray(res?.items) ? res.items : []).filter((t) => t && Number.isFinite(Number(t.track_id)));
      rememberTracks(items);
      this.byId = new Map(items.map((t) => [String(t.track_id), t]));
      if (!items.length) {
        list.replaceChildren(h('li', { class: 'empty' }, 'Nothing played yet. Tracks you play show up here within a few seconds.'));
        summary.textContent = '';
      } else {
        list.replaceChildren(...items.map((t) => trackRow(t, {
          current: this.playingId === String(t.track_id),
          played: played(t.played_at),
        })));
        summary.textContent = `${items.length} ${items.length === 1 ? 'track' : 'tracks'}`;
      }
    } catch (err) {
      if (err.name === 'AbortError' || seq !== this.seq || err.status === 401) return;
      list.replaceChildren(h('li', { class: 'empty error' },
        h('span', null, `Couldn't load your recently played tracks: ${err.message}`),
        h('button', { class: 'btn btn-small', type: 'button', onclick: () => this.load() }, 'Retry')));
      summary.textContent = '';
    } finally {
      if (seq === this.seq) {
        list.removeAttribute('aria-busy');
        refresh.disabled = false;
      }
    }
  }

  /** One of the listener's plays was acknowledged: reload (if shown) once it can be in the history. */
  playedSoon() {
    for (const t of this.timers) clearTimeout(t);
    this.timers = AFTER_PLAY_MS.map((ms) => setTimeout(() => { if (this.visible) this.load(); }, ms));
  }

  /** Highlight the rows of the track being played. */
  markPlaying(trackId) {
    const id = trackId == null ? null : String(trackId);
    if (id === this.playingId) return;
    this.playingId = id;
    for (const row of this.els.list.querySelectorAll('.track-row')) {
      row.classList.toggle('is-current', id != null && row.dataset.trackId === id);
    }
  }

  reset() {
    this.ctrl?.abort();
    this.seq += 1;
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    this.byId.clear();
    this.playingId = null;
    this.els.list.replaceChildren();
    this.els.summary.textContent = '';
  }
}
