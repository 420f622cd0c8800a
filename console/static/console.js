// Live execution pages: step states arrive as server-sent events and recolour the graph;
// when the execution ends, its status changes too (reload to see its attempts).
(function () {
  const section = document.getElementById("execution");
  if (!section || section.dataset.live !== "yes") return;
  const source = new EventSource(`/executions/${encodeURIComponent(section.dataset.execution)}/events`);
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.outcome) {
      source.close();
      const status = document.getElementById("status");
      status.textContent = event.outcome;
      status.className = `status ${event.outcome}`;
      return;
    }
    const step = section.querySelector(`g[data-step="${CSS.escape(event.step)}"]`);
    if (!step) return;
    step.setAttribute("class", `step ${event.state}`);
    step.querySelector("text.state").textContent = event.state;
  };
})();
