// berth console: live updates over server-sent events. Pages work without
// this script; it only keeps them current without a reload.
'use strict';
(function () {
  var main = document.getElementById('main');
  var live = document.getElementById('live');

  function say(text) { if (live) { live.textContent = text; } }

  function debounce(fn, ms) {
    var t = null;
    return function () { if (t) { clearTimeout(t); } t = setTimeout(fn, ms); };
  }

  function stream(params, handlers) {
    var q = new URLSearchParams();
    Object.keys(params).forEach(function (k) { if (params[k]) { q.set(k, params[k]); } });
    var es = new EventSource('/ui/stream?' + q.toString());
    Object.keys(handlers).forEach(function (type) {
      es.addEventListener(type, function (m) { handlers[type](JSON.parse(m.data)); });
    });
    es.addEventListener('stopped', function (m) {
      var d = JSON.parse(m.data);
      showError('Live updates of ' + d.log + ' events stopped: ' + d.error);
    });
    window.__berthStream = es;
    return es;
  }

  function showError(text) {
    var p = document.getElementById('live-error');
    if (!p) {
      p = document.createElement('p');
      p.id = 'live-error'; p.className = 'error'; p.setAttribute('role', 'alert');
      main.insertBefore(p, main.firstChild);
    }
    p.textContent = text;
  }

  // Replace an element with the same element of a fresh copy of the page.
  function refresh(id) {
    return fetch(location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var fresh = doc.getElementById(id), old = document.getElementById(id);
        if (fresh && old) { old.replaceWith(fresh); }
      });
  }

  // As the pages print times: 2006-01-02 15:04:05Z.
  function stamp(t) { return new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z'); }

  function setHealth(cell, state) {
    cell.textContent = state;
    cell.className = cell.className.replace(/\bh-\S+/g, '') + ' h-' + state;
  }

  // Pending: the list follows node lifecycle events.
  var pending = document.getElementById('pending-list');
  if (pending) {
    var again = debounce(function () {
      refresh('pending-list').then(function () { say('Pending list updated'); });
    }, 200);
    stream({ logs: 'node', after: pending.getAttribute('data-after') }, { node: again });
  }

  // Fleet: rows on this page and the counts follow node and health events.
  var fleet = document.getElementById('fleet');
  if (fleet) {
    var recount = debounce(function () {
      fetch('/ui/fleet/counts', { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
        .then(function (r) { return r.json(); })
        .then(function (c) {
          if (c.error) { showError('Counts: ' + c.error); return; }
          document.querySelectorAll('[data-count]').forEach(function (el) {
            var k = el.getAttribute('data-count').split(':');
            if (k[0] === 'at') { el.textContent = new Date(c.at).toISOString().slice(11, 19) + 'Z'; return; }
            var v = k[0] === 'total' ? c.total : (k[0] === 'status' ? c.by_status : c.by_health)[k[1]];
            el.textContent = v || 0;
          });
        });
    }, 2500); // longer than the server caches counts, so the last fetch sees the last event
    var row = function (id) { return fleet.querySelector('tr[data-node="' + CSS.escape(id) + '"]'); };
    stream({ logs: 'node,health', after: fleet.getAttribute('data-after') }, {
      health: function (e) {
        var r = row(e.node_id);
        if (r && e.state) {
          setHealth(r.querySelector('.health'), e.state);
          if (e.status && e.status !== '—') { r.querySelector('.reported').textContent = e.status; }
          // Every health event was raised by the node's beat (or its
          // silence): a healthy, rebooted or status event is a sighting.
          if (e.state !== 'unreachable' && e.state !== 'suspect') { r.querySelector('.seen').textContent = stamp(e.time); }
          r.setAttribute('data-updated', String(Date.now()));
          r.setAttribute('data-event-time', e.time);
          say(e.node_id + ' is ' + e.state);
        }
        if (e.type === 'healthy' || e.type === 'suspect' || e.type === 'unreachable') { recount(); }
      },
      node: function (e) {
        var r = row(e.node_id);
        var st = { approved: 'approved', rejected: 'rejected', revoked: 'revoked', registered: 'pending' }[e.type];
        if (r && st) {
          var c = r.querySelector('.status');
          c.textContent = st;
          c.className = 'status st-' + st;
        }
        if (e.type === 'deleted' && r) { r.remove(); }
        recount();
      }
    });
  }

  // Event tables (Events and Node pages) prepend new events.
  var table = document.querySelector('table[data-events]');
  if (table) {
    var body = table.tBodies[0];
    var add = function (e) {
      var empty = body.querySelector('tr.empty');
      if (empty) { empty.remove(); }
      var tr = document.createElement('tr');
      tr.className = 'fresh';
      tr.setAttribute('data-node', e.node_id);
      var cells = [stamp(e.time), null, e.log, e.type, e.text];
      cells.forEach(function (v, i) {
        var td = document.createElement('td');
        if (i === 1) {
          var a = document.createElement('a');
          a.href = '/ui/nodes/' + encodeURIComponent(e.node_id);
          var code = document.createElement('code'); code.textContent = e.node_id; a.appendChild(code);
          td.appendChild(a);
        } else { td.textContent = v; }
        if (i === 3) { td.className = 'ev-' + e.type; }
        tr.appendChild(td);
      });
      body.insertBefore(tr, body.firstChild);
      while (body.rows.length > 500) { body.deleteRow(body.rows.length - 1); }
      say(e.type + ' ' + e.node_id);
      var nodeId = table.getAttribute('data-node');
      if (nodeId && e.node_id === nodeId) {
        var h = document.getElementById('node-health');
        if (h && e.log === 'health' && e.state) { setHealth(h, e.state); }
        var s = document.getElementById('node-status');
        var st = { approved: 'approved', rejected: 'rejected', revoked: 'revoked' }[e.type];
        if (s && st) { s.textContent = st; s.className = 'status st-' + st; }
      }
    };
    stream({ node: table.getAttribute('data-node'), type: table.getAttribute('data-type'), after: table.getAttribute('data-after') },
      { node: add, health: add, bundle: add });
  }
})();
