// nginx's check of a form body before TorchServe decodes it (njs, `js_content guard.api`).
//
// TorchServe's frontend decodes multipart and urlencoded bodies into one parameter per field
// (netty 4.1.53, with no limit on their number: CVE-2024-29025), and its worker unpacks each
// one: 100,000 tiny fields in a 7 MiB body cost seconds of a worker and hundreds of MB of the
// frontend's memory. The API needs two fields at most (the image and an explanation's target),
// so a form with more than $max_form_fields is refused here, by counting its field separators
// in the body nginx has already read; every other body passes untouched, to a lane: explanations
// and bodies over $fast_lane_max_body bytes to the model's heavy lane, the rest to its fast lane.

const FORM = /^\s*(multipart\/|application\/x-www-form-urlencoded)/i;

// Field starts, counted up to limit + 1 and no further, so a hostile body costs at most that
// many searches. In multipart every delimiter (nested multipart/mixed ones too) starts a line
// with "--"; the closing one is no field. A urlencoded field ends at "&".
function fields(body, multipart, limit) {
    const separator = multipart ? "\r\n--" : "&";
    let found = multipart && body.slice(0, 2).toString() === "--" ? 1 : 0;
    for (let at = body.indexOf(separator); at !== -1 && found <= limit + 1; at = body.indexOf(separator, at + 1)) {
        found++;
    }
    return multipart ? found - 1 : found + 1;
}

function refuse(r, type, message) {
    r.headersOut["Content-Type"] = "application/json";
    r.return(400, JSON.stringify({code: 400, type: type, message: message}));
}

function api(r) {
    const types = r.rawHeadersIn.filter(header => header[0].toLowerCase() === "content-type");
    if (types.length > 1) {
        return refuse(r, "invalid_request", "send one Content-Type header");
    }
    const type = types.length ? types[0][1] : "";
    const body = r.requestBuffer;
    if (FORM.test(type) && body) {
        const limit = Number(r.variables.max_form_fields);
        if (fields(body, /^\s*multipart\//i.test(type), limit) > limit) {
            return refuse(r, "too_many_form_fields", `a form may hold at most ${limit} fields: send the image as `
                          + "one file field (and an explanation's target), or as the request body");
        }
    }
    const heavy = r.variables.endpoint === "explanations"
        || (body ? body.length : 0) > Number(r.variables.fast_lane_max_body);
    r.internalRedirect(heavy ? "@heavy_lane" : "@fast_lane");
}

export default {api};
