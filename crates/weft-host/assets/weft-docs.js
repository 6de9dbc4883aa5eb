// Starts Swagger UI on a weft docs page. Loaded from the host, like
// everything else on the page: the docs work with no internet access.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  var form = document.getElementById("weft-auth");
  var input = document.getElementById("weft-token");
  var message = document.getElementById("weft-auth-message");
  var specUrl = root.getAttribute("data-spec-url") + window.location.search;
  var KEY = "weft-token";

  function token() {
    try {
      return window.sessionStorage.getItem(KEY) || "";
    } catch (e) {
      return "";
    }
  }

  function show(spec) {
    form.hidden = true;
    window.ui = window.SwaggerUIBundle({
      spec: spec,
      domNode: root,
      deepLinking: true,
      validatorUrl: null,
      presets: [window.SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      requestInterceptor: function (request) {
        var t = token();
        if (t && !request.headers.Authorization) {
          request.headers.Authorization = "Bearer " + t;
        }
        return request;
      },
    });
  }

  function ask(detail) {
    message.textContent = detail || "This host requires a token.";
    form.hidden = false;
    input.focus();
  }

  function fail(detail) {
    root.textContent = "Cannot load " + specUrl + ": " + detail;
  }

  function load() {
    var headers = {};
    var t = token();
    if (t) {
      headers.Authorization = "Bearer " + t;
    }
    fetch(specUrl, { headers: headers })
      .then(function (response) {
        return response.json().then(function (body) {
          return { status: response.status, ok: response.ok, body: body };
        });
      })
      .then(function (r) {
        if (r.ok) {
          show(r.body);
        } else if (r.status === 401 || r.status === 403) {
          ask(r.body.detail);
        } else {
          fail((r.body && r.body.detail) || "HTTP " + r.status);
        }
      })
      .catch(function (e) {
        fail(String(e));
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    try {
      window.sessionStorage.setItem(KEY, input.value.trim());
    } catch (e) {
      // Without storage the token lasts until the page reloads.
    }
    load();
  });

  load();
})();
