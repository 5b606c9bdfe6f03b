// The dashboard's static assets, embedded so the receiver serves them without
// files on disk or any external resource.
// receiver/dashboard_render.h describes the DOM contract both rely on.
#ifndef HOIST_RECEIVER_DASHBOARD_ASSETS_H_
#define HOIST_RECEIVER_DASHBOARD_ASSETS_H_

namespace hoist::receiver {

// The stylesheet, served as /assets/dashboard.css (text/css). NUL-terminated.
extern const char kDashboardCss[];

// The JavaScript module, served as /assets/dashboard.js (text/javascript) and
// loaded with <script type="module">. It only adds live updates over
// Server-Sent Events (/events, /rollouts/ID/events); every page works
// without it. NUL-terminated.
extern const char kDashboardJs[];

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_DASHBOARD_ASSETS_H_
