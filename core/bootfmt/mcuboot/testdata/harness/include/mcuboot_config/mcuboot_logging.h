/* Logging is off: the harness prints only what it measures. */
