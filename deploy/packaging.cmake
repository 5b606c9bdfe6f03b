# Installation layout and Debian packages (CPack), one .deb per daemon:
#   hoist-agent     bin/hoist-agent, lib/systemd/system/hoist-agent.service,
#                   share/doc/hoist/examples/agent.yaml
#   hoist-receiver  bin/hoist-receiver, lib/systemd/system/hoist-receiver.service,
#                   share/doc/hoist/examples/receiver.yaml
#   hoistctl        bin/hoistctl, share/hoist/certs.sh, share/doc/hoist/*.md
# Build them after a full build with:  (cd build && cpack -G DEB)
# Included at the end of the top CMakeLists.txt.

set(HOIST_DEPLOY_DIR ${CMAKE_CURRENT_LIST_DIR})

# The executables' own install rules (in their CMakeLists) carry no
# component; install them again here under their package's component.
# CPACK_COMPONENTS_ALL below leaves the component-less copies out of the
# packages, and a plain `cmake --install` writes the same file twice.
foreach(pair "hoist-agent;agent" "hoist-receiver;receiver" "hoistctl;cli")
  list(GET pair 0 target)
  list(GET pair 1 component)
  if(TARGET ${target})
    install(PROGRAMS $<TARGET_FILE:${target}> DESTINATION bin COMPONENT ${component})
  endif()
endforeach()

install(FILES ${HOIST_DEPLOY_DIR}/systemd/hoist-agent.service
  DESTINATION lib/systemd/system COMPONENT agent)
install(FILES ${HOIST_DEPLOY_DIR}/examples/agent.yaml
  DESTINATION share/doc/hoist/examples COMPONENT agent)
install(FILES ${HOIST_DEPLOY_DIR}/systemd/hoist-receiver.service
  DESTINATION lib/systemd/system COMPONENT receiver)
install(FILES ${HOIST_DEPLOY_DIR}/examples/receiver.yaml
  DESTINATION share/doc/hoist/examples COMPONENT receiver)
install(PROGRAMS ${HOIST_DEPLOY_DIR}/certs.sh DESTINATION share/hoist COMPONENT cli)
install(FILES
  ${PROJECT_SOURCE_DIR}/README.md
  ${PROJECT_SOURCE_DIR}/docs/operator-guide.md
  ${PROJECT_SOURCE_DIR}/docs/architecture.md
  DESTINATION share/doc/hoist COMPONENT cli OPTIONAL)

set(CPACK_PACKAGE_NAME hoist)
set(CPACK_PACKAGE_VENDOR "Hoist")
set(CPACK_PACKAGE_CONTACT "Hoist maintainers <hoist-maintainers@example.com>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Continuous deployment for Docker fleets, driven by registry webhooks")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_COMPONENTS_ALL agent receiver cli)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/hoist-cd/hoist")

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME hoist-agent)
set(CPACK_COMPONENT_AGENT_DESCRIPTION
  "Hoist node agent: deploys containers on this host for the Hoist receiver (mTLS gRPC), health-checks them and rolls back on failure.")
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_AGENT_PACKAGE_RECOMMENDS "docker.io")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA ${HOIST_DEPLOY_DIR}/debian/postinst)

set(CPACK_DEBIAN_RECEIVER_PACKAGE_NAME hoist-receiver)
set(CPACK_COMPONENT_RECEIVER_DESCRIPTION
  "Hoist receiver: takes JFrog Artifactory webhooks and rolls deploys out to Hoist agents; Control API for hoistctl.")
set(CPACK_DEBIAN_RECEIVER_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_RECEIVER_PACKAGE_CONTROL_EXTRA ${HOIST_DEPLOY_DIR}/debian/postinst)

set(CPACK_DEBIAN_CLI_PACKAGE_NAME hoistctl)
set(CPACK_COMPONENT_CLI_DESCRIPTION
  "hoistctl: operator CLI for Hoist's Control API (agents, rollouts, watch, deploy, rollback, resume); certificate tooling.")
set(CPACK_DEBIAN_CLI_PACKAGE_RECOMMENDS "openssl")

include(CPack)
