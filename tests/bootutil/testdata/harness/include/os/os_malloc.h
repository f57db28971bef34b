/* loader.c includes this in swap builds; the host's malloc is enough. */
