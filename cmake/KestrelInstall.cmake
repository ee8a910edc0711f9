# Install rules and the CMake package: find_package(kestrel) then link kestrel::kestrel.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS kestrel EXPORT kestrelTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/kestrel DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT kestrelTargets NAMESPACE kestrel::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/kestrel)
configure_package_config_file(cmake/kestrelConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/kestrelConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/kestrel)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/kestrelConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/kestrelConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/kestrelConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/kestrel)
