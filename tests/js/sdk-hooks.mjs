// Node module hooks that let the npm build of wukongimjssdk 1.0.4 load under Node.
// Its lib/*.js files are ES modules (import/export) inside a package without "type": "module",
// and they import each other without file extensions ("./const", "."), the way a bundler expects.
// These hooks treat lib/*.js as ES modules and add the missing ".js" / "/index.js".
const SDK_LIB = '/node_modules/wukongimjssdk/lib/';

export async function resolve(specifier, context, next) {
  const parent = context.parentURL || '';
  if (parent.includes(SDK_LIB) && (specifier === '.' || specifier.startsWith('./') || specifier.startsWith('../'))) {
    const base = specifier === '.' ? './index' : specifier;
    if (!base.endsWith('.js')) {
      return next(new URL(base + '.js', parent).href, context);
    }
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (url.includes(SDK_LIB) && url.endsWith('.js')) {
    return next(url, { ...context, format: 'module' });
  }
  return next(url, context);
}
