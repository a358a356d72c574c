// Cadenza web player — panels.js
// The three live lists around the catalogue:
//  * UpNextPanel  — "Up next for you" (#upnext > .upnext-item[data-track-id] with .reason),
//    fed by GET /api/recommendations at start and websocket "recommendations" messages;
//    ignores lists for another user or older than the one shown; flashes on change. Items
//    whose track has no audio (`playable: false` from GET /api/tracks/{id}, cached) are shown
//    as .is-unplayable: "No audio", play and queue disabled.
//  * TrendingPanel — latest window per cluster from websocket "trending" messages, top tracks
//    merged and ranked by plays; titles looked up with GET /api/tracks/{id} (cached).
//  * QueuePanel   — the playback queue (#queue > .queue-item[data-track-id]).
// All text goes through textContent (dom.js h()).

import { getTrack, peekTrack } from './api.js';
import { h, icon, flash, formatNumber } from './dom.js';
import { displayTitle } from './playback.js';
import { NOT_PLAYABLE } from './browse.js';

const TRENDING_SHOWN = 8;

function timeOf(iso) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t : null;
}

/** Fill a title/artist pair, looking the track up when the message carried no title. */
function titleNodes(id, title, artist) {
  const titleEl = h('span', { class: 'item-title' }, title || `Track ${id}`);
  const artistEl = h('span', { class: 'item-artist' }, artist || '');
  if (!title) {
    const known = peekTrack(id);
    if (known) {
      titleEl.textContent = displayTitle(known);
      artistEl.textContent = known.artist || '';
    } else {
      getTrack(id).then((t) => {
        titleEl.textContent = displayTitle(t);
        artistEl.textContent = t.artist || '';
      }).catch(() => { /* keep "Track <id>" */ });
    }
  }
  return [titleEl, artistEl];
}

/** Show an item (li with .play and .queue-add buttons) as not playable (CSS adds "No audio"). */
function markUnplayable(li) {
  if (li.classList.contains('is-unplayable')) return;
  li.classList.add('is-unplayable');
  li.title = NOT_PLAYABLE;
  for (const b of li.querySelectorAll('.play, .queue-add')) {
    b.disabled = true;
    b.title = NOT_PLAYABLE;
  }
}

/** Mark ``li`` once its track is known to have no audio (from the cache, or looked up). */
function markIfUnplayable(li, id) {
  const known = peekTrack(id);
  if (known) {
    if (known.playable === false) markUnplayable(li);
    return;
  }
  getTrack(id).then((t) => { if (t?.playable === false) markUnplayable(li); }).catch(() => { /* unknown: playable */ });
}

export class UpNextPanel {
  constructor(list, meta, { onPlay, onQueue, getUserId }) {
    this.list = list;
    this.meta = meta;
    this.onPlay = onPlay;
    this.onQueue = onQueue;
    this.getUserId = getUserId;
    this.rec = null;
    this.recTime = -Infinity;
    list.addEventListener('click', (ev) => {
      const item = ev.target.closest('.upnext-item');
      if (!item || !this.rec) return;
      const rec = this.rec.items.find((i) => String(i.track_id) === item.dataset.trackId);
      if (!rec) return;
      if (ev.target.closest('.queue-add')) this.onQueue(rec);
      else this.onPlay(rec);
    });
    this.render(new Set(), false);
  }

  /** Show a Recommendation; returns true if it replaced the list. */
  set(rec, { live = false } = {}) {
    if (!rec || typeof rec !== 'object' || !Array.isArray(rec.items)) return false;
    const me = this.getUserId();
    if (rec.user_id && me && rec.user_id !== me) return false;
    const t = timeOf(rec.ts) ?? -Infinity;
    if (t < this.recTime) return false; // an older list arriving late
    const items = rec.items.filter((i) => i && Number.isFinite(Number(i.track_id)));
    const prevIds = new Set((this.rec?.items || []).map((i) => String(i.track_id)));
    const same = this.rec && t === this.recTime
      && items.length === this.rec.items.length && items.every((i) => prevIds.has(String(i.track_id)));
    if (same) return false;
    const hadList = Boolean(this.rec && this.rec.items.length);
    this.rec = { ...rec, items };
    this.recTime = t;
    this.render(prevIds, live && hadList);
    if (live) flash(this.list.closest('.panel') || this.list, 'is-updated');
    return true;
  }

  clear() {
    this.rec = null;
    this.recTime = -Infinity;
    this.render(new Set(), false);
  }

  render(prevIds, markNew) {
    const items = this.rec?.items || [];
    if (!items.length) {
      this.list.replaceChildren(h('li', { class: 'empty' },
        'Play something and Cadenza will suggest what to hear next — live, as you listen.'));
    } else {
      this.list.replaceChildren(...items.map((item) => {
        const id = Number(item.track_id);
        const [titleEl, artistEl] = titleNodes(id, item.title, item.artist);
        const isNew = markNew && !prevIds.has(String(item.track_id));
        const li = h('li', {
          class: `upnext-item${isNew ? ' is-new' : ''}`,
          dataset: { trackId: id, cluster: item.cluster },
          title: Number.isFinite(Number(item.score)) ? `score ${Number(item.score).toFixed(3)}` : null,
        },
        h('button', { class: 'icon-btn play', type: 'button', 'aria-label': 'Play' }, icon('play', 18)),
        h('span', { class: 'item-text' }, titleEl, artistEl, h('span', { class: 'reason' }, item.reason || '')),
        h('button', { class: 'icon-btn queue-add', type: 'button', 'aria-label': 'Add to queue', title: 'Add to queue' }, icon('queue', 18)));
        markIfUnplayable(li, id);
        return li;
      }));
    }
    this.renderMeta();
    if (markNew) { // the highlight fades by CSS; drop the class even where animations don't run
      clearTimeout(this.newTimer);
      this.newTimer = setTimeout(() => {
        for (const el of this.list.querySelectorAll('.is-new')) el.classList.remove('is-new');
      }, 2400);
    }
  }

  renderMeta() {
    const rec = this.rec;
    if (!rec || !rec.ts) {
      this.meta.textContent = '';
      return;
    }
    const parts = [];
    const ts = timeOf(rec.ts);
    if (ts != null) parts.push(`updated ${new Date(ts).toLocaleTimeString()}`);
    const cause = timeOf(rec.cause_ts);
    if (ts != null && cause != null && ts >= cause) {
      const secs = (ts - cause) / 1000;
      parts.push(secs < 10 ? `${secs.toFixed(1)} s after your play` : 'after your last play');
    }
    this.meta.textContent = parts.join(' · ');
    this.meta.title = rec.model_version ? `model ${rec.model_version}` : '';
  }
}

export class TrendingPanel {
  constructor(list, meta, { onPlay }) {
    this.list = list;
    this.meta = meta;
    this.onPlay = onPlay;
    this.byCluster = new Map();
    this.timer = null;
    list.addEventListener('click', (ev) => {
      const item = ev.target.closest('.trending-item');
      if (!item) return;
      const id = Number(item.dataset.trackId);
      const known = peekTrack(id);
      this.onPlay(known || { track_id: id, title: '', artist: '' });
    });
    this.render();
  }

  add(tr) {
    if (!tr || typeof tr !== 'object' || !Array.isArray(tr.top_tracks)) return;
    const key = String(tr.cluster);
    const prev = this.byCluster.get(key);
    if (prev && (timeOf(prev.window_end) ?? 0) > (timeOf(tr.window_end) ?? 0)) return;
    this.byCluster.set(key, tr);
    clearTimeout(this.timer); // messages come in bursts, one per cluster
    this.timer = setTimeout(() => this.render(), 250);
  }

  clear() {
    this.byCluster.clear();
    this.render();
  }

  render() {
    const windows = [...this.byCluster.values()];
    let newest = null;
    for (const w of windows) {
      const end = timeOf(w.window_end);
      if (end != null && (!newest || end > newest.end)) newest = { end, start: timeOf(w.window_start) ?? end };
    }
    // Keep the clusters whose latest window is still recent compared with the newest one.
    const span = newest ? Math.max(60000, newest.end - newest.start) : Infinity;
    const counts = new Map();
    for (const w of windows) {
      const end = timeOf(w.window_end);
      if (newest && end != null && end < newest.end - span) continue;
      for (const t of w.top_tracks) {
        const id = Number(t?.track_id);
        if (!Number.isFinite(id)) continue;
        counts.set(id, (counts.get(id) || 0) + (Number(t.plays) || 0));
      }
    }
    const top = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, TRENDING_SHOWN);
    if (!top.length) {
      this.list.replaceChildren(h('li', { class: 'empty' }, 'Nothing trending yet. What everyone plays shows up here.'));
    } else {
      this.list.replaceChildren(...top.map(([id, plays], i) => {
        const known = peekTrack(id);
        const [titleEl, artistEl] = titleNodes(id, known?.title || '', known?.artist || '');
        return h('li', { class: 'trending-item', dataset: { trackId: id } },
          h('span', { class: 'rank' }, String(i + 1)),
          h('span', { class: 'item-text' }, titleEl, artistEl),
          h('span', { class: 'plays' }, `${formatNumber(plays)} ${plays === 1 ? 'play' : 'plays'}`));
      }));
    }
    if (newest) {
      const mins = Math.round((newest.end - newest.start) / 60000);
      this.meta.textContent = mins > 0 ? `last ${mins} min` : '';
    } else {
      this.meta.textContent = '';
    }
  }
}

export class QueuePanel {
  constructor(list, { count, radioBadge, radioText, radioStop, clearButton }, playback) {
    this.list = list;
    this.count = count;
    this.radioBadge = radioBadge;
    this.radioText = radioText;
    this.playback = playback;
    list.addEventListener('click', (ev) => {
      const item = ev.target.closest('.queue-item');
      if (!item) return;
      const uid = Number(item.dataset.uid);
      if (ev.target.closest('.queue-remove')) playback.remove(uid);
      else playback.jumpTo(uid);
    });
    radioStop.addEventListener('click', () => playback.stopRadio());
    clearButton.addEventListener('click', () => playback.clearUpcoming());
    this.render();
  }

  render() {
    const pb = this.playback;
    const first = Math.max(0, pb.index - 3); // a little history, then the current and upcoming
    const entries = pb.queue.slice(first);
    if (!entries.length) {
      this.list.replaceChildren(h('li', { class: 'empty' }, 'Your queue is empty. Add tracks with + or start a radio.'));
    } else {
      this.list.replaceChildren(...entries.map((e, k) => {
        const i = first + k;
        const state = i < pb.index ? 'is-past' : i === pb.index ? 'is-current' : '';
        return h('li', {
          class: `queue-item ${state}`.trim(),
          dataset: { trackId: e.track.track_id, uid: e.uid, source: e.source },
          'aria-current': i === pb.index ? 'true' : null,
        },
        h('span', { class: 'item-text' },
          h('span', { class: 'item-title' }, displayTitle(e.track)),
          h('span', { class: 'item-artist' }, e.track.artist || '')),
        i === pb.index ? h('span', { class: 'eq', 'aria-label': 'now playing' }, h('i'), h('i'), h('i'))
          : h('button', { class: 'icon-btn queue-remove', type: 'button', 'aria-label': 'Remove from queue', title: 'Remove' }, icon('close', 16)));
      }));
      const cur = this.list.querySelector('.is-current');
      if (cur) { // keep the current entry in view inside the list only (never scroll the page)
        const top = cur.offsetTop;
        const { scrollTop, clientHeight } = this.list;
        if (top < scrollTop || top + cur.offsetHeight > scrollTop + clientHeight) this.list.scrollTop = Math.max(0, top - 8);
      }
    }
    const n = pb.upcomingCount;
    this.count.textContent = n ? `${n} next` : '';
    this.count.title = n ? `${n} tracks after this one` : '';
    this.radioBadge.hidden = !pb.radio;
    if (pb.radio) this.radioText.textContent = `Radio · ${displayTitle(pb.radio.seed)}`;
  }
}
