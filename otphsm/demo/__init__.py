"""`otphsm demo` (`make demo`): the whole story on simulated devices, narrated and checked.
`world` starts and stops the parts; `story` plays the steps."""
