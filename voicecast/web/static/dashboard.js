/* voicecast live dashboard (templates/dashboard.html).
 *
 * Follows the WebSocket /ws/campaigns/{name} and updates the figures, tables and charts
 * without reloading; reconnects with exponential back-off (1 s doubling to 30 s, +-20 %)
 * when the socket drops. #live-state[data-state] is "connecting" | "live" | "disconnected";
 * #dashboard[data-updated] counts the snapshots received (browser tests wait on it).
 *
 * Charts: Chart.js v4.6.1 (MIT licence, static/chart.LICENSE.md), vendored as
 * static/chart.umd.min.js from the npm package chart.js@4.6.1 (dist/chart.umd.min.js).
 * Nothing is fetched from the internet.
 */
(function () {
  'use strict';

  var root = document.getElementById('dashboard');
  if (!root) {
    return;
  }
  var labels = JSON.parse(root.dataset.labels);
  var initial = JSON.parse(root.dataset.initial);
  var lang = document.documentElement.lang || undefined;

  var MAX_POINTS = 600; // points kept on the activity chart
  var MIN_DELAY = 1000; // ms before the first reconnection
  var MAX_DELAY = 30000; // ms: longest wait between two reconnections
  var SILENCE = 45000; // ms without any message (heartbeats come every 15 s): reconnect
  var COLORS = {
    human: '#1a7f37', machine: '#8250df', opted_out: '#bf3989', transferred: '#0969da',
    busy: '#d4a72c', no_answer: '#8c959f', congestion: '#bc4c00', invalid_number: '#cf222e',
    rejected: '#a40e26', failed: '#57606a', blocked: '#24292f'
  };
  var FALLBACK = ['#1f6feb', '#fb8f44', '#6639ba', '#2da44e', '#e16f24', '#0550ae'];

  var received = 0;
  var socket = null;
  var delay = MIN_DELAY;
  var lastMessage = 0;
  var leaving = false;

  function byId(id) {
    return document.getElementById(id);
  }

  function setText(id, value) {
    var el = byId(id);
    if (el && el.textContent !== String(value)) {
      el.textContent = String(value);
    }
  }

  function decimal(value, digits) {
    return Number(value).toLocaleString(lang, {
      minimumFractionDigits: digits, maximumFractionDigits: digits
    });
  }

  function label(group, code) {
    var table = labels[group] || {};
    return Object.prototype.hasOwnProperty.call(table, code) ? table[code] : code;
  }

  function row(attr, code, text, count) {
    var tr = document.createElement('tr');
    tr.setAttribute(attr, code);
    var name = document.createElement('td');
    name.textContent = text;
    var n = document.createElement('td');
    n.className = 'count';
    n.textContent = String(count);
    tr.appendChild(name);
    tr.appendChild(n);
    return tr;
  }

  function findRow(body, attr, code) {
    var rows = body.querySelectorAll('tr[' + attr + ']');
    for (var i = 0; i < rows.length; i += 1) {
      if (rows[i].getAttribute(attr) === code) {
        return rows[i];
      }
    }
    return null;
  }

  /* Fixed rows (every known code, 0 when absent), plus rows for codes not known yet. */
  function fillFixed(tableId, attr, group, counts) {
    var body = byId(tableId).tBodies[0];
    var rows = body.querySelectorAll('tr[' + attr + ']');
    var seen = {};
    for (var i = 0; i < rows.length; i += 1) {
      var code = rows[i].getAttribute(attr);
      seen[code] = true;
      var cell = rows[i].querySelector('.count');
      var value = String(counts[code] || 0);
      if (cell.textContent !== value) {
        cell.textContent = value;
      }
    }
    Object.keys(counts).forEach(function (code) {
      if (!seen[code]) {
        body.appendChild(row(attr, code, label(group, code), counts[code]));
      }
    });
  }

  /* Rows only for the reasons present now; "None" when there is none. */
  function fillReasons(tableId, counts) {
    var body = byId(tableId).tBodies[0];
    var rows = body.querySelectorAll('tr[data-reason]');
    for (var i = 0; i < rows.length; i += 1) {
      if (!Object.prototype.hasOwnProperty.call(counts, rows[i].dataset.reason)) {
        body.removeChild(rows[i]);
      }
    }
    Object.keys(counts).forEach(function (code) {
      var tr = findRow(body, 'data-reason', code);
      if (tr) {
        tr.querySelector('.count').textContent = String(counts[code]);
      } else {
        body.appendChild(row('data-reason', code, label('reasons', code), counts[code]));
      }
    });
    byId(tableId + '-none').hidden = Object.keys(counts).length > 0;
  }

  var outcomesChart = null;
  var activityChart = null;

  function makeCharts() {
    if (typeof window.Chart !== 'function') {
      return;
    }
    var Chart = window.Chart;
    outcomesChart = new Chart(byId('chart-outcomes'), {
      type: 'doughnut',
      data: { labels: [], datasets: [{ data: [], backgroundColor: [] }] },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: { duration: 250 },
        plugins: { legend: { position: 'right' } }
      }
    });
    activityChart = new Chart(byId('chart-activity'), {
      type: 'line',
      data: {
        labels: [],
        datasets: [
          {
            label: labels.chart.calls_up, data: [], yAxisID: 'y', stepped: true,
            borderColor: '#1f6feb', backgroundColor: '#1f6feb', pointRadius: 0, borderWidth: 2
          },
          {
            label: labels.chart.cps, data: [], yAxisID: 'y1', tension: 0.25,
            borderColor: '#1a7f37', backgroundColor: '#1a7f37', pointRadius: 0, borderWidth: 2
          }
        ]
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: 'index', intersect: false },
        scales: {
          y: { beginAtZero: true, position: 'left', ticks: { precision: 0 },
               title: { display: true, text: labels.chart.calls_up } },
          y1: { beginAtZero: true, position: 'right', grid: { drawOnChartArea: false },
                title: { display: true, text: labels.chart.cps } }
        }
      }
    });
  }

  function updateCharts(s) {
    if (outcomesChart) {
      var order = labels.outcome_order || [];
      var codes = order.concat(Object.keys(s.outcomes).filter(function (c) {
        return order.indexOf(c) < 0;
      })).filter(function (c) {
        return (s.outcomes[c] || 0) > 0;
      });
      var data = outcomesChart.data;
      data.labels = codes.map(function (c) { return label('outcomes', c); });
      data.datasets[0].data = codes.map(function (c) { return s.outcomes[c]; });
      data.datasets[0].backgroundColor = codes.map(function (c, i) {
        return COLORS[c] || FALLBACK[i % FALLBACK.length];
      });
      outcomesChart.update();
    }
    if (activityChart) {
      var points = activityChart.data;
      points.labels.push(new Date(s.at).toLocaleTimeString(lang));
      points.datasets[0].data.push(s.calls_up);
      points.datasets[1].data.push(s.cps);
      if (points.labels.length > MAX_POINTS) {
        points.labels.shift();
        points.datasets[0].data.shift();
        points.datasets[1].data.shift();
      }
      activityChart.update();
    }
  }

  function apply(s) {
    setText('stat-calls-up', s.calls_up);
    setText('stat-cps', decimal(s.cps, 2));
    setText('stat-attempts', s.attempts);
    setText('stat-done', s.done);
    setText('stat-contacts', s.contacts);
    setText('stat-progress', decimal(s.progress * 100, 1) + ' %');
    setText('stat-pending', s.pending);
    setText('stat-dialing', s.dialing);
    byId('progress-bar').value = s.progress;
    var status = byId('campaign-status');
    status.dataset.status = s.status;
    setText('campaign-status', label('status', s.status));
    setText('campaign-status-reason', s.status_reason || '');
    var dialing = byId('dialing-state');
    var state = (s.dialing && s.dialing.state) || 'unknown';
    var banner = labels.dialing[state];
    dialing.dataset.state = state;
    dialing.hidden = !banner;
    dialing.textContent = banner ? (banner + ' ' + (s.dialing.detail || '')).trim() : '';
    var at = byId('stats-at');
    at.dateTime = s.at;
    setText('stats-at', new Date(s.at).toLocaleString(lang));
    fillFixed('outcomes', 'data-outcome', 'outcomes', s.outcomes);
    fillFixed('amd', 'data-amd', 'amd', s.amd);
    fillReasons('deferred', s.deferred);
    fillReasons('blocked', s.blocked);
    updateCharts(s);
  }

  function setState(state) {
    var el = byId('live-state');
    el.dataset.state = state;
    el.textContent = label('state', state);
  }

  function reconnectLater() {
    var wait = delay * (0.8 + Math.random() * 0.4);
    delay = Math.min(delay * 2, MAX_DELAY);
    window.setTimeout(connect, wait);
  }

  function connect() {
    if (leaving) {
      return;
    }
    var scheme = window.location.protocol === 'https:' ? 'wss://' : 'ws://';
    var ws;
    try {
      ws = new WebSocket(scheme + window.location.host + root.dataset.ws);
    } catch (err) {
      setState('disconnected');
      reconnectLater();
      return;
    }
    socket = ws;
    ws.onopen = function () {
      delay = MIN_DELAY;
      lastMessage = Date.now();
      setState('live');
    };
    ws.onmessage = function (event) {
      lastMessage = Date.now();
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (message.type === 'snapshot') {
        apply(message.stats);
        received += 1;
        root.dataset.updated = String(received);
      }
    };
    ws.onclose = function (event) {
      if (socket === ws) {
        socket = null;
      }
      if (leaving) {
        return;
      }
      setState('disconnected');
      if (event.code === 4401) { // the session ended: the reload leads to the login page
        window.location.reload();
        return;
      }
      if (event.code === 4404) { // the campaign was deleted
        return;
      }
      reconnectLater();
    };
  }

  window.setInterval(function () {
    if (socket && socket.readyState === WebSocket.OPEN && Date.now() - lastMessage > SILENCE) {
      socket.close(); // silent for too long: onclose reconnects
    }
  }, 5000);
  window.addEventListener('pagehide', function () {
    leaving = true;
    if (socket) {
      socket.close(1000, 'page closed');
    }
  });
  window.addEventListener('pageshow', function (event) {
    if (event.persisted && leaving) { // back from the browser's page cache
      leaving = false;
      delay = MIN_DELAY;
      connect();
    }
  });

  makeCharts();
  apply(initial);
  setState('connecting');
  connect();
}());
