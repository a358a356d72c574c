// Cadenza web player — browse.js
// The catalogue view: debounced search box (#search), genre chips, an artist filter,
// the track list (.track-row[data-track-id] with a .play button, + queue, radio) and
// "Load more" paging. Endpoints: GET /api/tracks?q=&genre=&artist=&page=&per_page=,
// GET /api/genres. Stale responses are dropped (aborted) when the filters change.
// A track with `playable: false` (no audio on this server, e.g. imported features only) is
// listed as .track-row.is-unplayable: a "No audio" label, play and queue buttons disabled
// (with a tooltip saying why); "Start radio" still works from it. The rows and their clicks
// (trackRow, rowAction) are shared with the "Recently played" view (recent.js).

import { api, rememberTracks } from './api.js';
import { h, icon, debounce, formatTime, formatNumber, toast } from './dom.js';

const PER_PAGE = 50;
export const NOT_PLAYABLE = 'Not playable: this track has no audio on this server (features only)';

export class Browse {
  constructor(els, { onPlay, onQueue, onRadio }) {
    this.els = els; // {list, chips, search, more, summary, pills}
    this.onPlay = onPlay;
    this.onQueue = onQueue;
    this.onRadio = onRadio;
    this.filters = { q: '', genre: '', artist: '' };
    this.items = [];
    this.byId = new Map();
    this.page = 0;
    this.total = 0;
    this.seq = 0;
    this.ctrl = null;
    this.playingId = null;
    this.genresLoaded = false;

    const searchNow = () => this.setFilter('q', els.search.value.trim());
    const searchLater = debounce(searchNow, 300);
    els.search.addEventListener('input', searchLater);
    els.search.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') { searchLater.cancel(); searchNow(); }
      if (ev.key === 'Escape' && els.search.value) { els.search.value = ''; searchLater.cancel(); searchNow(); }
    });
    els.more.addEventListener('click', () => this.load(false));
    els.chips.addEventListener('click', (ev) => {
      const chip = ev.target.closest('.chip');
      if (chip) this.setFilter('genre', chip.dataset.genre || '');
    });
    els.pills.addEventListener('click', (ev) => {
      const pill = ev.target.closest('.pill');
      if (pill) this.setFilter(pill.dataset.filter, '');
    });
    els.list.addEventListener('click', (ev) => this._onListClick(ev));
  }

  setFilter(key, value) {
    if (this.filters[key] === value) return;
    this.filters[key] = value;
    if (key === 'q' && this.els.search.value.trim() !== value) this.els.search.value = value;
    this._renderChipsState();
    this._renderPills();
    this.load(true);
  }

  clearFilters() {
    this.filters = { q: '', genre: '', artist: '' };
    this.els.search.value = '';
    this._renderChipsState();
    this._renderPills();
    this.load(true);
  }

  /** Load page 1 (reset) or the next page. */
  async load(reset = true) {
    const seq = ++this.seq;
    this.ctrl?.abort();
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    const page = reset ? 1 : this.page + 1;
    const { list, more, summary } = this.els;
    list.setAttribute('aria-busy', 'true');
    list.classList.toggle('is-loading', reset);
    more.disabled = true;
    more.textContent = 'Loading…';
    if (reset && !this.items.length) summary.textContent = 'Loading the catalogue…';
    try {
      const res = await api.tracks({ ...this.filters, page, perPage: PER_PAGE }, ctrl.signal);
      if (seq !== this.seq) return;
      const items = Array.isArray(res?.items) ? res.items : [];
      rememberTracks(items);
      if (reset) {
        this.items = [];
        this.byId.clear();
        list.replaceChildren();
        list.scrollTop = 0;
      }
      for (const t of items) {
        this.items.push(t);
        this.byId.set(String(t.track_id), t);
      }
      this.page = Number(res?.page) || page;
      this.total = Number.isFinite(Number(res?.total)) ? Number(res.total) : this.items.length;
      list.append(...items.map((t) => this._row(t)));
      if (!this.items.length) list.replaceChildren(h('li', { class: 'empty' }, 'No tracks match. Try another search or genre.'));
      this._renderSummary();
      more.hidden = !(items.length > 0 && this.items.length < this.total);
    } catch (err) {
      if (err.name === 'AbortError' || seq !== this.seq || err.status === 401) return;
      if (reset) {
        list.replaceChildren(h('li', { class: 'empty error' },
          h('span', null, `Couldn't load tracks: ${err.message}`),
          h('button', { class: 'btn btn-small', type: 'button', onclick: () => this.load(true) }, 'Retry')));
        summary.textContent = '';
      } else {
        toast(`Couldn't load more tracks: ${err.message}`, 'error');
      }
    } finally {
      if (seq === this.seq) {
        list.removeAttribute('aria-busy');
        list.classList.remove('is-loading');
        more.disabled = false;
        more.textContent = 'Load more';
      }
    }
  }

  async loadGenres() {
    if (this.genresLoaded) return;
    try {
      const res = await api.genres();
      const genres = (Array.isArray(res?.items) ? res.items : []).filter((g) => g && typeof g.genre === 'string' && g.genre);
      this.genresLoaded = true;
      this.els.chips.replaceChildren(
        h('button', { class: 'chip', type: 'button', dataset: { genre: '' } }, 'All'),
        ...genres.map((g) => h('button', {
          class: 'chip', type: 'button', dataset: { genre: g.genre }, title: `${formatNumber(g.tracks)} tracks`,
        }, g.genre)));
      this._renderChipsState();
    } catch (err) {
      if (err.status !== 401) toast(`Couldn't load genres: ${err.message}`, 'error');
    }
  }

  /** Highlight the rows of the track being played. */
  markPlaying(trackId) {
    const id = trackId == null ? null : String(trackId);
    if (id === this.playingId) return;
    this.playingId = id;
    for (const row of this.els.list.querySelectorAll('.track-row.is-current')) row.classList.remove('is-current');
    if (id != null) {
      for (const row of this.els.list.querySelectorAll(`.track-row[data-track-id="${CSS.escape(id)}"]`)) row.classList.add('is-current');
    }
  }

  reset() {
    this.ctrl?.abort();
    this.seq += 1;
    this.filters = { q: '', genre: '', artist: '' };
    this.items = [];
    this.byId.clear();
    this.genresLoaded = false;
    this.playingId = null;
    this.els.search.value = '';
    this.els.list.replaceChildren();
    this.els.chips.replaceChildren();
    this.els.pills.replaceChildren();
    this.els.summary.textContent = '';
    this.els.more.hidden = true;
  }

  _onListClick(ev) {
    rowAction(ev, this.byId, {
      onPlay: this.onPlay,
      onQueue: this.onQueue,
      onRadio: this.onRadio,
      onArtist: (artist) => this.setFilter('artist', artist),
    });
  }

  _row(t) {
    return trackRow(t, { current: this.playingId === String(t.track_id) });
  }

  _renderChipsState() {
    for (const chip of this.els.chips.querySelectorAll('.chip')) {
      chip.setAttribute('aria-pressed', String((chip.dataset.genre || '') === this.filters.genre));
    }
  }

  _renderPills() {
    const pills = [];
    if (this.filters.artist) {
      pills.push(h('button', { class: 'pill', type: 'button', dataset: { filter: 'artist' }, title: 'Remove this filter' },
        `Artist: ${this.filters.artist}`, icon('close', 14)));
    }
    this.els.pills.replaceChildren(...pills);
  }

  _renderSummary() {
    const { q, genre, artist } = this.filters;
    let text = `${formatNumber(this.total)} ${this.total === 1 ? 'track' : 'tracks'}`;
    if (q) text += ` matching “${q}”`;
    if (genre) text += ` in ${genre}`;
    if (artist) text += ` by ${artist}`;
    if (this.items.length < this.total) text += ` · showing ${formatNumber(this.items.length)}`;
    this.els.summary.textContent = text;
  }
}

/** What a click in a list of track rows (trackRow) asks for, done with byId's track of the row:
 * radio, the artist's tracks, play, or add to queue (an unplayable track only says why not). */
export function rowAction(ev, byId, { onPlay, onQueue, onRadio, onArtist }) {
  const row = ev.target.closest('.track-row');
  if (!row) return;
  const track = byId.get(row.dataset.trackId);
  if (!track) return;
  if (ev.target.closest('.radio')) onRadio(track);
  else if (ev.target.closest('.t-artist')) { if (track.artist) onArtist(track.artist); }
  else if (track.playable === false) toast(`“${track.title || `Track ${track.track_id}`}” has no audio here, so it can't be played or queued. “Start radio” plays similar tracks.`);
  else if (ev.target.closest('.queue-add')) onQueue(track);
  else onPlay(track); // the .play button or anywhere else on the row
}

/** A catalogue row (.track-row[data-track-id]): play, title and artist, album, genre (or, given
 * `played` {iso, label, title}, when it was played), time, + queue and radio. Text only. */
export function trackRow(t, { current = false, played = null } = {}) {
  const title = t.title || `Track ${t.track_id}`;
  const unplayable = t.playable === false;
  const row = h('li', {
    class: `track-row${unplayable ? ' is-unplayable' : ''}`,
    dataset: { trackId: t.track_id },
    'aria-disabled': unplayable ? 'true' : null,
  },
    h('span', { class: 't-num', title: unplayable ? NOT_PLAYABLE : null },
      h('button', {
        class: 'icon-btn play', type: 'button', disabled: unplayable,
        'aria-label': unplayable ? `${title}: not playable, no audio` : `Play ${title}`,
        title: unplayable ? NOT_PLAYABLE : 'Play',
      }, icon('play', 18))),
    h('span', { class: 't-main' },
      h('span', { class: 't-title' }, title,
        unplayable ? h('span', { class: 'tag no-audio', title: NOT_PLAYABLE }, 'No audio') : null),
      t.artist
        ? h('button', { class: 't-artist', type: 'button', title: `Only tracks by ${t.artist}` }, t.artist)
        : h('span', { class: 't-artist muted' }, 'Unknown artist')),
    h('span', { class: 't-album' }, t.album || ''),
    played
      ? h('span', { class: 't-played' }, h('time', { datetime: played.iso, title: played.title }, played.label))
      : h('span', { class: 't-genre' }, t.genre_top ? h('span', { class: 'tag' }, t.genre_top) : ''),
    h('span', { class: 't-dur' }, Number(t.duration_s) > 0 ? formatTime(Number(t.duration_s)) : ''),
    h('span', { class: 't-actions' },
      h('button', {
        class: 'icon-btn queue-add', type: 'button', disabled: unplayable,
        'aria-label': `Add ${title} to queue`, title: unplayable ? NOT_PLAYABLE : 'Add to queue',
      }, icon('queue', 18)),
      h('button', { class: 'icon-btn radio', type: 'button', 'aria-label': `Start radio from ${title}`, title: 'Start radio' }, icon('radio', 18))));
  if (current) row.classList.add('is-current');
  return row;
}
